package master

import (
	"context"
	"fmt"
	"runtime/debug"
	"sort"
	"sync"
	"time"

	"mailsrv/maillog"
)

// Service is one supervised role. Serve runs until ctx is cancelled (then it
// stops taking new work, finishes what it has, and returns nil) or until it
// fails (it returns an error or panics), in which case the supervisor
// restarts it.
type Service interface {
	Serve(ctx context.Context) error
}

// ServiceFunc adapts a function to Service.
type ServiceFunc func(ctx context.Context) error

// Serve calls f.
func (f ServiceFunc) Serve(ctx context.Context) error { return f(ctx) }

// Factory builds a fresh instance of a service for each (re)start, so a
// restarted service never inherits half-updated state from its crash.
type Factory func() (Service, error)

// Supervisor runs services, restarting one that panics or fails with
// exponential backoff while the others keep running. It is written here
// rather than taken from a supervision library (thejerf/suture) because the
// policy is Postfix's: backoff capped at service_throttle_time, log lines in
// master's style, and graceful replacement of a service on reload while
// its old instance drains.
//
// Backoff grows from MinBackoff, doubling per consecutive failure, capped at
// MaxBackoff; a run that lasts longer than MaxBackoff resets it. After
// FailureAlarm consecutive failures each further failure is logged as an
// error and the service is reported as failing in status.
type Supervisor struct {
	Log          *maillog.Logger
	MinBackoff   time.Duration
	MaxBackoff   time.Duration
	FailureAlarm int

	mu       sync.Mutex
	slots    map[string]*slot
	wg       sync.WaitGroup
	draining sync.WaitGroup // old instances finishing after a reload
}

// slot is one named service and its current instance.
type slot struct {
	name     string
	factory  Factory
	cancel   context.CancelFunc
	done     chan struct{}
	state    string // starting, running, backoff, stopped
	failures int    // consecutive
	restarts int
	lastErr  string
	svc      Service // the running instance, for Retire
}

// Retirer is a service that must let go of shared resources (its handle on
// a listening socket) synchronously when it is replaced, before its
// successor starts; Serve may still finish its work afterwards.
type Retirer interface {
	Retire()
}

// Status describes one supervised service.
type Status struct {
	Name     string `json:"name"`
	State    string `json:"state"`
	Restarts int    `json:"restarts"`
	Failures int    `json:"consecutive_failures"`
	LastErr  string `json:"last_error,omitempty"`
}

// NewSupervisor returns a supervisor with Postfix-like defaults.
func NewSupervisor(log *maillog.Logger, throttle time.Duration) *Supervisor {
	if throttle <= 0 {
		throttle = 60 * time.Second
	}
	return &Supervisor{Log: log, MinBackoff: time.Second, MaxBackoff: throttle, FailureAlarm: 5, slots: map[string]*slot{}}
}

// Start runs a service under the name; a service already running under that
// name is replaced: its old instance is told to stop and drains in the
// background while the new one starts (reload without dropping sessions).
func (s *Supervisor) Start(parent context.Context, name string, f Factory) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if old, ok := s.slots[name]; ok {
		s.retire(old)
	}
	ctx, cancel := context.WithCancel(parent)
	sl := &slot{name: name, factory: f, cancel: cancel, done: make(chan struct{}), state: "starting"}
	s.slots[name] = sl
	s.wg.Add(1)
	go s.run(ctx, sl)
}

// Stop stops one service and forgets it; its instance drains in the
// background (Wait includes it).
func (s *Supervisor) Stop(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if old, ok := s.slots[name]; ok {
		s.retire(old)
		delete(s.slots, name)
	}
}

// retire cancels an instance; called with s.mu held.
func (s *Supervisor) retire(sl *slot) {
	if r, ok := sl.svc.(Retirer); ok {
		r.Retire()
	}
	sl.cancel()
	s.draining.Add(1)
	go func() {
		<-sl.done
		s.draining.Done()
	}()
}

// Names lists the supervised services.
func (s *Supervisor) Names() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, 0, len(s.slots))
	for n := range s.slots {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// StopAll cancels every service.
func (s *Supervisor) StopAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, sl := range s.slots {
		sl.cancel()
	}
}

// Wait blocks until every service, current or retired, has returned, or
// until ctx ends (then it reports which are still running).
func (s *Supervisor) Wait(ctx context.Context) error {
	done := make(chan struct{})
	go func() {
		s.wg.Wait()
		s.draining.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		var busy []string
		for _, st := range s.Status() {
			if st.State != "stopped" {
				busy = append(busy, st.Name)
			}
		}
		return fmt.Errorf("services still running: %v", busy)
	}
}

// Status reports every service's state.
func (s *Supervisor) Status() []Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Status, 0, len(s.slots))
	for _, sl := range s.slots {
		out = append(out, Status{Name: sl.name, State: sl.state, Restarts: sl.restarts, Failures: sl.failures, LastErr: sl.lastErr})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

func (s *Supervisor) setState(sl *slot, state string) {
	s.mu.Lock()
	sl.state = state
	s.mu.Unlock()
}

func (s *Supervisor) run(ctx context.Context, sl *slot) {
	defer s.wg.Done()
	defer close(sl.done)
	defer s.setState(sl, "stopped")
	backoff := s.MinBackoff
	for {
		started := time.Now()
		s.setState(sl, "running")
		err := s.once(ctx, sl)
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			err = fmt.Errorf("service returned unexpectedly")
		}
		if time.Since(started) > s.MaxBackoff {
			// It ran well for a while: this is a new failure, not a
			// crash loop.
			backoff = s.MinBackoff
			s.mu.Lock()
			sl.failures = 0
			s.mu.Unlock()
		}
		s.mu.Lock()
		sl.failures++
		sl.restarts++
		sl.lastErr = err.Error()
		failures := sl.failures
		sl.state = "backoff"
		s.mu.Unlock()
		if failures >= s.FailureAlarm {
			s.Log.Errorf("service %s keeps failing (%d times in a row): %v -- throttling, next restart in %s", sl.name, failures, err, backoff)
		} else {
			s.Log.Warnf("service %s failed: %v; restarting in %s", sl.name, err, backoff)
		}
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		backoff = min(2*backoff, s.MaxBackoff)
	}
}

// once builds and runs one instance, turning a panic into an error.
func (s *Supervisor) once(ctx context.Context, sl *slot) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic: %v", r)
			s.Log.Debugf("service %s panic stack:\n%s", sl.name, debug.Stack())
		}
	}()
	svc, err := sl.factory()
	if err != nil {
		return fmt.Errorf("cannot start: %w", err)
	}
	s.mu.Lock()
	sl.svc = svc
	s.mu.Unlock()
	if ctx.Err() != nil {
		// Replaced while starting: retire now, Serve returns at once.
		if r, ok := svc.(Retirer); ok {
			r.Retire()
		}
	}
	return svc.Serve(ctx)
}
