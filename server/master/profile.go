package master

import (
	"bytes"
	"fmt"
	"runtime"
	"runtime/pprof"
	"time"
)

// maxProfile bounds a CPU profile's duration.
const maxProfile = 10 * time.Minute

// profile takes a pprof profile of the running daemon (`mailsrv postfix
// profile`): kind is cpu (for the given duration), heap, allocs or
// goroutine. A profile is how the hot path is measured under a real load
// (docs/PERFORMANCE.md), without a debug build or an HTTP listener.
func profile(args []string) ([]byte, error) {
	if len(args) != 2 {
		return nil, fmt.Errorf("profile: want KIND DURATION")
	}
	kind := args[0]
	var b bytes.Buffer
	switch kind {
	case "cpu":
		d, err := time.ParseDuration(args[1])
		if err != nil || d <= 0 || d > maxProfile {
			return nil, fmt.Errorf("profile: bad duration %q (between 1s and %s)", args[1], maxProfile)
		}
		if err := pprof.StartCPUProfile(&b); err != nil {
			return nil, fmt.Errorf("profile: %v", err)
		}
		time.Sleep(d)
		pprof.StopCPUProfile()
	case "heap", "allocs", "goroutine":
		if kind != "goroutine" {
			runtime.GC() // the heap profile shows the state as of the last GC
		}
		if err := pprof.Lookup(kind).WriteTo(&b, 0); err != nil {
			return nil, fmt.Errorf("profile: %v", err)
		}
	default:
		return nil, fmt.Errorf("profile: unknown kind %q (cpu, heap, allocs, goroutine)", kind)
	}
	return b.Bytes(), nil
}
