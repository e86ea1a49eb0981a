package config

import "time"

// Params holds the effective, expanded, typed value of every main.cf
// parameter that mailsrv implements. Each field's tags define the parameter:
//
//	pf      the Postfix parameter name (the TOML key)
//	def     the default, written as in Postfix's main.cf ($name allowed)
//	unit    for time values: the unit of a bare number ("300" = 300s)
//	kind    "path" (relative to the config file's folder), "maps" (a list of
//	        type:name lookup tables whose file names are made absolute),
//	        "computed" (default derived from the machine, see computedDefault)
//	enum    the allowed values, separated by |
//	expand  "delivery": $name is expanded at delivery time with the
//	        recipient's attributes ($home, $user, ...), not when loading
//	doc     a one-line description (postconf, config.example.toml)
//
// Defaults are those of Postfix 3.x at a modern compatibility level; the
// few deliberate differences are listed in defaultExceptions (params_test.go
// compares every default against Postfix's own `postconf -d`).
type Params struct {
	// Identity.
	MailName        string   `pf:"mail_name" def:"mailsrv" doc:"the mail system name used in the SMTP greeting and in notices"`
	MailVersion     string   `pf:"mail_version" kind:"computed" doc:"the mailsrv version (read-only)"`
	Myhostname      string   `pf:"myhostname" kind:"computed" doc:"the fully qualified name of this host (default: the system host name)"`
	Mydomain        string   `pf:"mydomain" kind:"computed" doc:"the domain of this host (default: myhostname minus its first label)"`
	Myorigin        string   `pf:"myorigin" def:"$myhostname" doc:"the domain appended to locally posted mail without a domain"`
	Mydestination   []string `pf:"mydestination" def:"$myhostname, localhost.$mydomain, localhost" doc:"domains delivered locally by the local transport"`
	Mynetworks      []string `pf:"mynetworks" kind:"computed" doc:"trusted client networks allowed to relay (default: from mynetworks_style)"`
	MynetworksStyle string   `pf:"mynetworks_style" def:"host" enum:"host|subnet|class" doc:"how to compute mynetworks when it is not set"`
	InetInterfaces  []string `pf:"inet_interfaces" def:"all" doc:"addresses this host receives mail on (for own-address checks)"`
	InetProtocols   []string `pf:"inet_protocols" def:"all" doc:"IP versions used: all, ipv4, ipv6"`
	ProxyInterfaces []string `pf:"proxy_interfaces" def:"" doc:"addresses of NAT or proxy devices that forward mail to this host"`

	// Routing.
	RelayDomains                        []string `pf:"relay_domains" def:"" doc:"domains this host relays mail to (besides its own)"`
	Relayhost                           string   `pf:"relayhost" def:"" doc:"next hop for all non-local mail, e.g. [smtp.example.com]:587 (empty = direct delivery via DNS)"`
	RelayTransport                      string   `pf:"relay_transport" def:"relay" doc:"transport for mail to relay_domains"`
	DefaultTransport                    string   `pf:"default_transport" def:"smtp" doc:"transport for mail to remote destinations"`
	LocalTransport                      string   `pf:"local_transport" def:"local:$myhostname" doc:"transport for mail to mydestination"`
	VirtualTransport                    string   `pf:"virtual_transport" def:"virtual" doc:"transport for mail to virtual_mailbox_domains"`
	TransportMaps                       []string `pf:"transport_maps" kind:"maps" def:"" doc:"lookup tables that map recipients or domains to transport:nexthop"`
	RecipientDelimiter                  string   `pf:"recipient_delimiter" def:"" doc:"separator between user name and address extension (e.g. +)"`
	AppendAtMyorigin                    bool     `pf:"append_at_myorigin" def:"yes" doc:"append @$myorigin to addresses without a domain"`
	AppendDotMydomain                   bool     `pf:"append_dot_mydomain" def:"no" doc:"append .$mydomain to domains without a dot"`
	SwapBangpath                        bool     `pf:"swap_bangpath" def:"yes" doc:"rewrite site!user to user@site"`
	AllowPercentHack                    bool     `pf:"allow_percent_hack" def:"yes" doc:"rewrite user%domain to user@domain"`
	ResolveDequotedAddress              bool     `pf:"resolve_dequoted_address" def:"yes" doc:"look inside quoted local parts when resolving (blocks relay tricks)"`
	AllowUntrustedRouting               bool     `pf:"allow_untrusted_routing" def:"no" doc:"allow sender-specified routing (user%host@relay.domain) into relay_domains"`
	EmptyAddressRecipient               string   `pf:"empty_address_recipient" def:"MAILER-DAEMON" doc:"recipient of mail addressed to the null address"`
	CanonicalMaps                       []string `pf:"canonical_maps" kind:"maps" def:"" doc:"address mapping for envelope and header addresses"`
	SenderCanonicalMaps                 []string `pf:"sender_canonical_maps" kind:"maps" def:"" doc:"address mapping for sender addresses"`
	RecipientCanonicalMaps              []string `pf:"recipient_canonical_maps" kind:"maps" def:"" doc:"address mapping for recipient addresses"`
	MasqueradeDomains                   []string `pf:"masquerade_domains" def:"" doc:"domains whose subdomains are hidden in sender addresses"`
	PropagateUnmatchedExtensions        []string `pf:"propagate_unmatched_extensions" def:"canonical, virtual" doc:"table classes that keep an address extension that the lookup ignored"`
	VirtualAliasRecursionLimit          int      `pf:"virtual_alias_recursion_limit" def:"1000" doc:"deepest nesting of virtual alias expansion"`
	VirtualAliasExpansionLimit          int      `pf:"virtual_alias_expansion_limit" def:"1000" doc:"most addresses one virtual alias expansion may produce"`
	VirtualAliasAddressLengthLimit      int      `pf:"virtual_alias_address_length_limit" def:"1000" doc:"longest address produced by virtual alias expansion"`
	DuplicateFilterLimit                int      `pf:"duplicate_filter_limit" def:"1000" doc:"addresses remembered to drop duplicate recipients"`
	MasqueradeExceptions                []string `pf:"masquerade_exceptions" def:"" doc:"local parts never masqueraded (e.g. root)"`
	MasqueradeClasses                   []string `pf:"masquerade_classes" def:"envelope_sender, header_sender, header_recipient" doc:"which addresses masquerade_domains applies to"`
	CanonicalClasses                    []string `pf:"canonical_classes" def:"envelope_sender, envelope_recipient, header_sender, header_recipient" doc:"which addresses canonical_maps applies to"`
	SenderCanonicalClasses              []string `pf:"sender_canonical_classes" def:"envelope_sender, header_sender" doc:"which addresses sender_canonical_maps applies to"`
	RecipientCanonicalClasses           []string `pf:"recipient_canonical_classes" def:"envelope_recipient, header_recipient" doc:"which addresses recipient_canonical_maps applies to"`
	SenderDependentRelayhostMaps        []string `pf:"sender_dependent_relayhost_maps" kind:"maps" def:"" doc:"relayhost per sender address or domain"`
	SenderDependentDefaultTransportMaps []string `pf:"sender_dependent_default_transport_maps" kind:"maps" def:"" doc:"default_transport per sender address or domain"`
	RelocatedMaps                       []string `pf:"relocated_maps" kind:"maps" def:"" doc:"addresses of users who have moved (bounced with their new address)"`
	ResolveNullDomain                   bool     `pf:"resolve_null_domain" def:"no" doc:"accept user@ (an empty domain) as user@$myhostname"`
	ResolveNumericDomain                bool     `pf:"resolve_numeric_domain" def:"no" doc:"accept user@1.2.3.4 (an IP address without brackets) as a domain"`
	AllowMinUser                        bool     `pf:"allow_min_user" def:"no" doc:"allow addresses whose local part starts with -"`
	ParentDomainMatchesSubdomains       []string `pf:"parent_domain_matches_subdomains" def:"debug_peer_list,fast_flush_domains,mynetworks,permit_mx_backup_networks,qmqpd_authorized_clients,relay_domains,smtpd_access_maps" doc:"lists where example.com also matches sub.example.com"`
	EnableOriginalRecipient             bool     `pf:"enable_original_recipient" def:"yes" doc:"record each recipient's address before rewriting"`
	AlwaysBcc                           string   `pf:"always_bcc" def:"" doc:"address that receives a copy of every message"`
	LocalHeaderRewriteClients           []string `pf:"local_header_rewrite_clients" def:"permit_inet_interfaces" doc:"clients whose header addresses are rewritten as local"`
	RemoteHeaderRewriteDomain           string   `pf:"remote_header_rewrite_domain" def:"" doc:"domain appended to incomplete header addresses from remote clients (empty = do not rewrite)"`

	DefaultDatabaseType string `pf:"default_database_type" def:"hash" enum:"hash|cdb" doc:"table type postmap and postalias build when none is given"`

	// Local and virtual delivery.
	AliasMaps                   []string      `pf:"alias_maps" kind:"maps" def:"hash:/etc/aliases" doc:"alias tables used by local delivery"`
	AliasDatabase               []string      `pf:"alias_database" kind:"maps" def:"hash:/etc/aliases" doc:"alias tables rebuilt by newaliases"`
	LocalRecipientMaps          []string      `pf:"local_recipient_maps" kind:"maps" def:"proxy:unix:passwd.byname $alias_maps" doc:"tables of valid local recipients (empty = accept any local user)"`
	MailSpoolDirectory          string        `pf:"mail_spool_directory" kind:"path" def:"/var/mail" doc:"directory of UNIX-style mailboxes"`
	HomeMailbox                 string        `pf:"home_mailbox" def:"" doc:"mailbox path relative to a user's home, e.g. Maildir/ (empty = mail_spool_directory)"`
	MailboxCommand              string        `pf:"mailbox_command" expand:"delivery" def:"" doc:"command that delivers to a user's mailbox instead of mailsrv"`
	MailboxSizeLimit            int           `pf:"mailbox_size_limit" def:"51200000" doc:"largest mailbox file or Maildir message in bytes (0 = no limit)"`
	ForwardPath                 []string      `pf:"forward_path" expand:"delivery" def:"$home/.forward${recipient_delimiter}${extension}, $home/.forward" doc:"where local delivery looks for .forward files"`
	AllowMailToCommands         []string      `pf:"allow_mail_to_commands" def:"alias, forward" doc:"where |command destinations are allowed"`
	AllowMailToFiles            []string      `pf:"allow_mail_to_files" def:"alias, forward" doc:"where /file destinations are allowed"`
	DefaultPrivs                string        `pf:"default_privs" def:"nobody" doc:"user for deliveries to commands and files in aliases"`
	VirtualMailboxDomains       []string      `pf:"virtual_mailbox_domains" def:"$virtual_mailbox_maps" doc:"domains delivered by the virtual transport"`
	VirtualMailboxMaps          []string      `pf:"virtual_mailbox_maps" kind:"maps" def:"" doc:"virtual address to mailbox path tables"`
	VirtualMailboxBase          string        `pf:"virtual_mailbox_base" kind:"path" def:"" doc:"prefix of every virtual mailbox path"`
	VirtualAliasMaps            []string      `pf:"virtual_alias_maps" kind:"maps" def:"$virtual_maps" doc:"virtual alias tables (address to address lists)"`
	VirtualAliasDomains         []string      `pf:"virtual_alias_domains" def:"$virtual_alias_maps" doc:"domains that only have virtual aliases"`
	VirtualUIDMaps              []string      `pf:"virtual_uid_maps" kind:"maps" def:"" doc:"user ID of each virtual mailbox"`
	VirtualGIDMaps              []string      `pf:"virtual_gid_maps" kind:"maps" def:"" doc:"group ID of each virtual mailbox"`
	VirtualMinimumUID           int           `pf:"virtual_minimum_uid" def:"100" doc:"smallest user ID the virtual transport accepts"`
	VirtualMaps                 []string      `pf:"virtual_maps" kind:"maps" def:"" doc:"legacy name of virtual_alias_maps"`
	VirtualMailboxLimit         int           `pf:"virtual_mailbox_limit" def:"51200000" doc:"largest virtual mailbox file or Maildir message in bytes (0 = no limit)"`
	VirtualMailboxLock          []string      `pf:"virtual_mailbox_lock" def:"fcntl, dotlock" doc:"how virtual mbox files are locked (fcntl, flock, dotlock)"`
	MailboxDeliveryLock         []string      `pf:"mailbox_delivery_lock" def:"fcntl, dotlock" doc:"how local mbox files are locked (fcntl, flock, dotlock)"`
	StaleLockTime               time.Duration `pf:"stale_lock_time" unit:"s" def:"500s" doc:"age after which a dotlock file is removed as stale"`
	DeliverLockAttempts         int           `pf:"deliver_lock_attempts" def:"20" doc:"tries to lock a mailbox before deferring"`
	DeliverLockDelay            time.Duration `pf:"deliver_lock_delay" unit:"s" def:"1s" doc:"pause between mailbox lock attempts"`
	PrependDeliveredHeader      []string      `pf:"prepend_delivered_header" def:"command, file, forward" doc:"deliveries that get a Delivered-To: header (mailbox deliveries always do)"`
	StrictMailboxOwnership      bool          `pf:"strict_mailbox_ownership" def:"yes" doc:"defer delivery to an mbox file the recipient does not own"`
	LuserRelay                  string        `pf:"luser_relay" expand:"delivery" def:"" doc:"where mail for unknown local users goes (empty = bounce)"`
	FallbackTransport           string        `pf:"fallback_transport" def:"" doc:"transport for local recipients not found in passwd"`
	MailboxTransport            string        `pf:"mailbox_transport" def:"" doc:"transport that takes over local mailbox delivery"`
	OwnerRequestSpecial         bool          `pf:"owner_request_special" def:"yes" doc:"owner-LIST and LIST-request aliases become the sender of errors for LIST"`
	ExpandOwnerAlias            bool          `pf:"expand_owner_alias" def:"no" doc:"use the expansion of owner-LIST, not the address, as the sender"`
	CommandTimeLimit            time.Duration `pf:"command_time_limit" unit:"s" def:"1000s" doc:"time limit of local and pipe commands"`
	LocalCommandShell           string        `pf:"local_command_shell" def:"" doc:"shell for |command deliveries (empty = /bin/sh -c, or direct exec when no shell syntax)"`
	SoftBounce                  bool          `pf:"soft_bounce" def:"no" doc:"defer instead of bouncing (for testing a configuration)"`
	DelayLoggingResolutionLimit int           `pf:"delay_logging_resolution_limit" def:"2" doc:"decimals in the delay= and delays= log fields"`

	// Queue, files and the running daemon.
	QueueDirectory       string        `pf:"queue_directory" kind:"path" def:"/var/spool/mailsrv" doc:"the mail queue"`
	MailOwner            string        `pf:"mail_owner" def:"mailsrv" doc:"the unprivileged user the daemon runs as after binding its ports"`
	SetgidGroup          string        `pf:"setgid_group" def:"postdrop" doc:"group that may drop mail into the maildrop queue"`
	HashQueueNames       []string      `pf:"hash_queue_names" def:"deferred, defer" doc:"queues that use hashed subdirectories"`
	HashQueueDepth       int           `pf:"hash_queue_depth" def:"1" doc:"levels of hashed subdirectories"`
	MaillogFile          string        `pf:"maillog_file" kind:"path" def:"" doc:"mail log file, or /dev/stdout (empty = syslog)"`
	SyslogName           string        `pf:"syslog_name" def:"mailsrv" doc:"prefix of the program name in log lines (mailsrv/smtpd[PID])"`
	SyslogFacility       string        `pf:"syslog_facility" def:"mail" doc:"syslog facility when logging to syslog"`
	ServiceThrottleTime  time.Duration `pf:"service_throttle_time" unit:"s" def:"60s" doc:"longest wait before a failing service is restarted"`
	DefaultProcessLimit  int           `pf:"default_process_limit" def:"100" doc:"default size of each service's worker pool (master.cf maxproc)"`
	MaxIdle              time.Duration `pf:"max_idle" unit:"s" def:"100s" doc:"how long an idle connection to an internal service is kept"`
	MaxUse               int           `pf:"max_use" def:"100" doc:"requests served by a cached internal connection before it is renewed"`
	IpcTimeout           time.Duration `pf:"ipc_timeout" unit:"s" def:"3600s" doc:"time limit of internal requests"`
	InFlowDelay          time.Duration `pf:"in_flow_delay" unit:"s" def:"1s" doc:"how long smtpd/pickup wait when mail arrives faster than it is delivered"`
	QueueMinfree         int           `pf:"queue_minfree" def:"0" doc:"free bytes the queue file system must keep for smtpd to accept mail (besides 1.5 x message_size_limit)"`
	ImportEnvironment    []string      `pf:"import_environment" def:"MAIL_CONFIG MAIL_DEBUG MAIL_LOGTAG TZ XAUTHORITY DISPLAY LANG=C POSTLOG_SERVICE POSTLOG_HOSTNAME" doc:"environment variables kept from the parent process"`
	ExportEnvironment    []string      `pf:"export_environment" def:"TZ MAIL_CONFIG LANG" doc:"environment variables passed to commands"`
	AuthorizedMailqUsers []string      `pf:"authorized_mailq_users" def:"static:anyone" doc:"users allowed to list the queue"`
	AuthorizedFlushUsers []string      `pf:"authorized_flush_users" def:"static:anyone" doc:"users allowed to flush the queue"`
	StopTimeout          time.Duration `pf:"mailsrv_stop_timeout" unit:"s" def:"30s" doc:"mailsrv only: how long postfix stop waits for sessions and deliveries in progress"`

	// Message limits.
	MessageSizeLimit        int      `pf:"message_size_limit" def:"10240000" doc:"largest message in bytes, envelope and headers included"`
	HeaderSizeLimit         int      `pf:"header_size_limit" def:"102400" doc:"largest message header in bytes"`
	LineLengthLimit         int      `pf:"line_length_limit" def:"2048" doc:"longer lines are stored in pieces"`
	HopcountLimit           int      `pf:"hopcount_limit" def:"50" doc:"most Received: headers before mail is bounced as a loop"`
	HeaderAddressTokenLimit int      `pf:"header_address_token_limit" def:"10240" doc:"most tokens parsed in one address header"`
	AlwaysAddMissingHeaders bool     `pf:"always_add_missing_headers" def:"no" doc:"add Date, Message-ID and From to mail from remote clients too"`
	MessageDropHeaders      []string `pf:"message_drop_headers" def:"bcc, content-length, resent-bcc, return-path" doc:"headers removed from every message"`
	CleanupReplaceStrayCRLF bool     `pf:"cleanup_replace_stray_cr_lf" def:"yes" doc:"replace a CR or LF inside a content line with a space"`
	MimeNestingLimit        int      `pf:"mime_nesting_limit" def:"100" doc:"deepest MIME nesting inspected"`

	// smtpd.
	SmtpdBanner                       string        `pf:"smtpd_banner" def:"$myhostname ESMTP $mail_name" doc:"text after 220 in the SMTP greeting"`
	SmtpdTimeout                      time.Duration `pf:"smtpd_timeout" unit:"s" def:"300s" doc:"time limit for a client to send a command or data"`
	SmtpdRecipientLimit               int           `pf:"smtpd_recipient_limit" def:"1000" doc:"most recipients accepted per message"`
	SmtpdRecipientOvershootLimit      int           `pf:"smtpd_recipient_overshoot_limit" def:"1000" doc:"recipients past the limit before each one counts as an error"`
	SmtpdHardErrorLimit               int           `pf:"smtpd_hard_error_limit" def:"20" doc:"errors before smtpd disconnects"`
	SmtpdSoftErrorLimit               int           `pf:"smtpd_soft_error_limit" def:"10" doc:"errors before smtpd slows down its replies"`
	SmtpdErrorSleepTime               time.Duration `pf:"smtpd_error_sleep_time" unit:"s" def:"1s" doc:"reply delay once the soft error limit is reached"`
	SmtpdJunkCommandLimit             int           `pf:"smtpd_junk_command_limit" def:"100" doc:"NOOP/VRFY/ETRN/RSET commands before each one counts as an error"`
	SmtpdHistoryFlushThreshold        int           `pf:"smtpd_history_flush_threshold" def:"100" doc:"lines of session transcript kept for a postmaster notice before EHLO, RSET or end of DATA starts a new one"`
	SmtpdHeloRequired                 bool          `pf:"smtpd_helo_required" def:"no" doc:"require HELO or EHLO before MAIL FROM"`
	DisableVrfyCommand                bool          `pf:"disable_vrfy_command" def:"no" doc:"turn off the VRFY command"`
	SmtpdDelayReject                  bool          `pf:"smtpd_delay_reject" def:"yes" doc:"evaluate client, helo and sender restrictions at RCPT TO"`
	SmtpdClientRestrictions           []string      `pf:"smtpd_client_restrictions" def:"" doc:"restrictions on the client's address and name"`
	SmtpdHeloRestrictions             []string      `pf:"smtpd_helo_restrictions" def:"" doc:"restrictions on the HELO/EHLO name"`
	SmtpdSenderRestrictions           []string      `pf:"smtpd_sender_restrictions" def:"" doc:"restrictions on MAIL FROM"`
	SmtpdRelayRestrictions            []string      `pf:"smtpd_relay_restrictions" def:"permit_mynetworks, permit_sasl_authenticated, defer_unauth_destination" doc:"relay control, evaluated at RCPT TO before smtpd_recipient_restrictions"`
	SmtpdRecipientRestrictions        []string      `pf:"smtpd_recipient_restrictions" def:"" doc:"restrictions on RCPT TO"`
	SmtpdDataRestrictions             []string      `pf:"smtpd_data_restrictions" def:"" doc:"restrictions at DATA or the first BDAT"`
	SmtpdEndOfDataRestrictions        []string      `pf:"smtpd_end_of_data_restrictions" def:"" doc:"restrictions after the end of the message"`
	SmtpdEtrnRestrictions             []string      `pf:"smtpd_etrn_restrictions" def:"" doc:"restrictions on ETRN"`
	SmtpdRestrictionClasses           []string      `pf:"smtpd_restriction_classes" def:"" doc:"names of user-defined restriction lists"`
	SmtpdRejectUnlistedRecipient      bool          `pf:"smtpd_reject_unlisted_recipient" def:"yes" doc:"reject recipients unknown in local and virtual domains"`
	SmtpdRejectUnlistedSender         bool          `pf:"smtpd_reject_unlisted_sender" def:"no" doc:"reject senders unknown in local and virtual domains"`
	SmtpdNullAccessLookupKey          string        `pf:"smtpd_null_access_lookup_key" def:"<>" doc:"access table key for the null sender"`
	RelayDomainsRejectCode            int           `pf:"relay_domains_reject_code" def:"554" doc:"reply code for relay access denied"`
	UnknownLocalRecipientRejectCode   int           `pf:"unknown_local_recipient_reject_code" def:"550" doc:"reply code for unknown local recipients"`
	UnknownVirtualMailboxRejectCode   int           `pf:"unknown_virtual_mailbox_reject_code" def:"550" doc:"reply code for unknown virtual mailboxes"`
	UnknownVirtualAliasRejectCode     int           `pf:"unknown_virtual_alias_reject_code" def:"550" doc:"reply code for unknown virtual aliases"`
	UnknownRelayRecipientRejectCode   int           `pf:"unknown_relay_recipient_reject_code" def:"550" doc:"reply code for unknown relay recipients"`
	RelayRecipientMaps                []string      `pf:"relay_recipient_maps" kind:"maps" def:"" doc:"valid recipients in relay_domains (empty = any)"`
	SmtpdClientConnectionCountLimit   int           `pf:"smtpd_client_connection_count_limit" def:"50" doc:"simultaneous connections per client address"`
	SmtpdClientConnectionRateLimit    int           `pf:"smtpd_client_connection_rate_limit" def:"0" doc:"connections per client per anvil_rate_time_unit (0 = no limit)"`
	SmtpdClientMessageRateLimit       int           `pf:"smtpd_client_message_rate_limit" def:"0" doc:"messages per client per anvil_rate_time_unit (0 = no limit)"`
	SmtpdClientRecipientRateLimit     int           `pf:"smtpd_client_recipient_rate_limit" def:"0" doc:"recipients per client per anvil_rate_time_unit (0 = no limit)"`
	SmtpdClientEventLimitExceptions   []string      `pf:"smtpd_client_event_limit_exceptions" def:"$mynetworks" doc:"clients exempt from the per-client limits"`
	SmtpdClientAuthRateLimit          int           `pf:"smtpd_client_auth_rate_limit" def:"0" doc:"AUTH commands per client per anvil_rate_time_unit (0 = no limit)"`
	AnvilRateTimeUnit                 time.Duration `pf:"anvil_rate_time_unit" unit:"s" def:"60s" doc:"time window of the per-client rate limits"`
	SmtpdForbidBareNewline            string        `pf:"smtpd_forbid_bare_newline" def:"normalize" enum:"normalize|note|reject|no|yes" doc:"SMTP smuggling defence for lines ending in a bare LF"`
	SmtpdForbidBareNewlineExclusions  []string      `pf:"smtpd_forbid_bare_newline_exclusions" def:"$mynetworks" doc:"clients exempt from smtpd_forbid_bare_newline"`
	SmtpdForbidUnauthPipelining       bool          `pf:"smtpd_forbid_unauth_pipelining" def:"yes" doc:"disconnect clients that pipeline where it is not allowed"`
	SmtpdDiscardEhloKeywords          []string      `pf:"smtpd_discard_ehlo_keywords" def:"" doc:"EHLO keywords not to announce"`
	SmtpdPerRequestDeadline           bool          `pf:"smtpd_per_request_deadline" def:"no" doc:"make smtpd_timeout a deadline for a whole command or message"`
	SmtpdMinDataRate                  int           `pf:"smtpd_min_data_rate" def:"500" min:"1" doc:"bytes per second a client must keep up with a per-request deadline"`
	UnknownAddressRejectCode          int           `pf:"unknown_address_reject_code" def:"450" doc:"reply code when a sender or recipient domain is not found"`
	UnknownClientRejectCode           int           `pf:"unknown_client_reject_code" def:"450" doc:"reply code when the client's name is not found"`
	UnknownHostnameRejectCode         int           `pf:"unknown_hostname_reject_code" def:"450" doc:"reply code when the HELO name is not found"`
	RejectTempfailAction              string        `pf:"reject_tempfail_action" def:"defer_if_permit" enum:"defer|defer_if_permit" doc:"what a temporary DNS failure of a reject_unknown_* restriction does"`
	UnknownAddressTempfailAction      string        `pf:"unknown_address_tempfail_action" def:"$reject_tempfail_action" enum:"defer|defer_if_permit" doc:"temporary failure of reject_unknown_sender_domain and _recipient_domain"`
	UnknownHeloHostnameTempfailAction string        `pf:"unknown_helo_hostname_tempfail_action" def:"$reject_tempfail_action" enum:"defer|defer_if_permit" doc:"temporary failure of reject_unknown_helo_hostname"`
	SmtpdPolicyServiceTimeout         time.Duration `pf:"smtpd_policy_service_timeout" unit:"s" def:"100s" doc:"time limit for a policy server's answer"`
	SmtpdPolicyServiceMaxIdle         time.Duration `pf:"smtpd_policy_service_max_idle" unit:"s" def:"300s" doc:"an idle policy server connection is closed after this"`
	SmtpdPolicyServiceMaxTTL          time.Duration `pf:"smtpd_policy_service_max_ttl" unit:"s" def:"1000s" doc:"a policy server connection is not reused past this age"`
	SmtpdPolicyServiceTryLimit        int           `pf:"smtpd_policy_service_try_limit" def:"2" min:"1" doc:"attempts per policy request"`
	SmtpdPolicyServiceRetryDelay      time.Duration `pf:"smtpd_policy_service_retry_delay" unit:"s" def:"1s" doc:"delay between policy request attempts"`
	SmtpdPolicyServiceDefaultAction   string        `pf:"smtpd_policy_service_default_action" def:"451 4.3.5 Server configuration problem" doc:"what a policy server that cannot be asked answers"`
	SmtpdPolicyServiceRequestLimit    int           `pf:"smtpd_policy_service_request_limit" def:"0" doc:"requests per policy server connection (0 = no limit)"`
	SmtpdPolicyServicePolicyContext   string        `pf:"smtpd_policy_service_policy_context" def:"" doc:"the policy_context attribute sent with each request"`
	MultiRecipientBounceRejectCode    int           `pf:"multi_recipient_bounce_reject_code" def:"550" doc:"reply code of reject_multi_recipient_bounce"`
	SmtpdTLSAskCcert                  bool          `pf:"smtpd_tls_ask_ccert" def:"no" doc:"ask TLS clients for a certificate"`
	SmtpdTLSCAfile                    string        `pf:"smtpd_tls_CAfile" kind:"path" def:"" doc:"CA certificates that client certificates are verified with"`
	SmtpdTLSFingerprintDigest         string        `pf:"smtpd_tls_fingerprint_digest" def:"sha256" enum:"md5|sha1|sha224|sha256|sha384|sha512" doc:"digest of client certificate fingerprints"`
	RelayClientcerts                  []string      `pf:"relay_clientcerts" kind:"maps" def:"" doc:"client certificate fingerprints that permit_tls_clientcerts lets relay"`
	PermitMxBackupNetworks            []string      `pf:"permit_mx_backup_networks" def:"" doc:"networks the primary MX hosts must be in for permit_mx_backup to relay"`
	RBLReplyMaps                      []string      `pf:"rbl_reply_maps" kind:"maps" def:"" doc:"reply templates per DNS list domain"`
	DefaultRBLReply                   string        `pf:"default_rbl_reply" expand:"delivery" def:"$rbl_code Service unavailable; $rbl_class [$rbl_what] blocked using $rbl_domain${rbl_reason?; $rbl_reason}" doc:"reply template for a client, helo, sender or recipient on a DNS block list"`
	MapsRBLRejectCode                 int           `pf:"maps_rbl_reject_code" def:"554" doc:"$rbl_code of the DNS list replies"`
	AccessMapRejectCode               int           `pf:"access_map_reject_code" def:"554" doc:"reply code for REJECT in an access table"`
	AccessMapDeferCode                int           `pf:"access_map_defer_code" def:"450" doc:"reply code for DEFER in an access table"`
	RejectCode                        int           `pf:"reject_code" def:"554" doc:"reply code for the reject restriction"`
	DeferCode                         int           `pf:"defer_code" def:"450" doc:"reply code for the defer restriction"`
	NonFqdnRejectCode                 int           `pf:"non_fqdn_reject_code" def:"504" doc:"reply code for reject_non_fqdn_* restrictions"`
	InvalidHostnameRejectCode         int           `pf:"invalid_hostname_reject_code" def:"501" doc:"reply code for reject_invalid_helo_hostname"`
	SmtpdPeernameLookup               bool          `pf:"smtpd_peername_lookup" def:"yes" doc:"look up the client's name in DNS (reverse, then forward to confirm)"`
	SmtpdClientPortLogging            bool          `pf:"smtpd_client_port_logging" def:"no" doc:"log the client's port with its address"`
	FastFlushDomains                  []string      `pf:"fast_flush_domains" def:"$relay_domains" doc:"destinations that ETRN and postqueue -s may flush"`

	// smtpd TLS and SASL.
	SmtpdTLSSecurityLevel      string   `pf:"smtpd_tls_security_level" def:"" enum:"|none|may|encrypt" doc:"server TLS: none, may (offer STARTTLS) or encrypt (require it)"`
	SmtpdTLSCertFile           string   `pf:"smtpd_tls_cert_file" kind:"path" def:"" doc:"PEM server certificate (full chain)"`
	SmtpdTLSKeyFile            string   `pf:"smtpd_tls_key_file" kind:"path" def:"$smtpd_tls_cert_file" doc:"PEM private key of smtpd_tls_cert_file"`
	SmtpdTLSChainFiles         []string `pf:"smtpd_tls_chain_files" def:"" doc:"PEM files each holding a key and its certificate chain (RSA and ECDSA)"`
	SmtpdTLSWrappermode        bool     `pf:"smtpd_tls_wrappermode" def:"no" doc:"implicit TLS (port 465)"`
	SmtpdTLSAuthOnly           bool     `pf:"smtpd_tls_auth_only" def:"yes" doc:"offer AUTH only over TLS (mailsrv default: yes)"`
	SmtpdTLSProtocols          []string `pf:"smtpd_tls_protocols" def:">=TLSv1" doc:"TLS versions offered with opportunistic TLS"`
	SmtpdTLSMandatoryProtocols []string `pf:"smtpd_tls_mandatory_protocols" def:">=TLSv1" doc:"TLS versions allowed when TLS is required"`
	SmtpdTLSCiphers            string   `pf:"smtpd_tls_ciphers" def:"medium" enum:"export|low|medium|high|null" doc:"cipher grade with opportunistic TLS"`
	SmtpdTLSMandatoryCiphers   string   `pf:"smtpd_tls_mandatory_ciphers" def:"medium" enum:"export|low|medium|high|null" doc:"cipher grade when TLS is required"`
	SmtpdTLSLoglevel           int      `pf:"smtpd_tls_loglevel" def:"0" doc:"TLS logging: 0 none, 1 a summary per connection"`
	SmtpdTLSReceivedHeader     bool     `pf:"smtpd_tls_received_header" def:"no" doc:"record TLS protocol and cipher in the Received header"`
	SmtpdSaslAuthEnable        bool     `pf:"smtpd_sasl_auth_enable" def:"no" doc:"offer SMTP AUTH"`
	SmtpdSaslType              string   `pf:"smtpd_sasl_type" def:"mailsrv" enum:"dovecot|mailsrv" doc:"SASL back end: dovecot (a Dovecot auth socket) or mailsrv (the built-in password table)"`
	SmtpdSaslPath              string   `pf:"smtpd_sasl_path" def:"smtpd" doc:"SASL back end socket or password table"`
	SmtpdSaslSecurityOptions   []string `pf:"smtpd_sasl_security_options" def:"noanonymous" doc:"SASL mechanism properties required"`
	SmtpdSenderLoginMaps       []string `pf:"smtpd_sender_login_maps" kind:"maps" def:"" doc:"which SASL users may use which sender addresses"`

	// qmgr.
	QueueRunDelay                                  time.Duration `pf:"queue_run_delay" unit:"s" def:"300s" doc:"how often the deferred queue is scanned"`
	MinimalBackoffTime                             time.Duration `pf:"minimal_backoff_time" unit:"s" def:"300s" doc:"shortest wait before a deferred message is retried"`
	MaximalBackoffTime                             time.Duration `pf:"maximal_backoff_time" unit:"s" def:"4000s" doc:"longest wait before a deferred message is retried"`
	MaximalQueueLifetime                           time.Duration `pf:"maximal_queue_lifetime" unit:"d" def:"5d" doc:"age at which undeliverable mail is returned"`
	BounceQueueLifetime                            time.Duration `pf:"bounce_queue_lifetime" unit:"d" def:"5d" doc:"the same for bounces (null-sender mail)"`
	DelayWarningTime                               time.Duration `pf:"delay_warning_time" unit:"h" def:"0h" doc:"age at which the sender is warned of a delay (0 = never)"`
	QmgrMessageActiveLimit                         int           `pf:"qmgr_message_active_limit" def:"20000" doc:"most messages in the active queue"`
	QmgrMessageRecipientLimit                      int           `pf:"qmgr_message_recipient_limit" def:"20000" doc:"most recipients held in memory"`
	QmgrClogWarnTime                               time.Duration `pf:"qmgr_clog_warn_time" unit:"s" def:"300s" doc:"least time between warnings about a clogged active queue"`
	InitialDestinationConcurrency                  int           `pf:"initial_destination_concurrency" def:"5" doc:"parallel deliveries to a destination at first"`
	DefaultDestinationConcurrencyLimit             int           `pf:"default_destination_concurrency_limit" def:"20" doc:"most parallel deliveries to one destination"`
	DefaultDestinationRecipientLimit               int           `pf:"default_destination_recipient_limit" def:"50" doc:"most recipients per delivery"`
	DefaultDestinationConcurrencyPositiveFeedback  string        `pf:"default_destination_concurrency_positive_feedback" def:"1" doc:"concurrency gain after a good delivery"`
	DefaultDestinationConcurrencyNegativeFeedback  string        `pf:"default_destination_concurrency_negative_feedback" def:"1" doc:"concurrency loss after a failed delivery"`
	DefaultDestinationConcurrencyFailedCohortLimit int           `pf:"default_destination_concurrency_failed_cohort_limit" def:"1" doc:"failed cohorts before a destination is considered dead"`
	DefaultDestinationRateDelay                    time.Duration `pf:"default_destination_rate_delay" unit:"s" def:"0s" doc:"forced pause between deliveries to one destination"`
	DefaultTransportRateDelay                      time.Duration `pf:"default_transport_rate_delay" unit:"s" def:"0s" doc:"forced pause between deliveries over one transport"`
	DefaultRecipientLimit                          int           `pf:"default_recipient_limit" def:"20000" doc:"in-memory recipients per transport"`
	DefaultExtraRecipientLimit                     int           `pf:"default_extra_recipient_limit" def:"1000" doc:"extra in-memory recipients per transport"`
	DefaultDeliverySlotCost                        int           `pf:"default_delivery_slot_cost" def:"5" doc:"deliveries a big message pays per slot lent to a smaller one"`
	LocalDestinationConcurrencyLimit               int           `pf:"local_destination_concurrency_limit" def:"2" doc:"parallel local deliveries per recipient"`
	LocalDestinationRecipientLimit                 int           `pf:"local_destination_recipient_limit" def:"1" doc:"recipients per local delivery"`
	TransportRetryTime                             time.Duration `pf:"transport_retry_time" unit:"s" def:"60s" doc:"how long a failing transport is suspended"`
	DeferTransports                                []string      `pf:"defer_transports" def:"" doc:"transports that deliver only on postqueue -f"`

	// Notices.
	NotifyClasses            []string `pf:"notify_classes" def:"resource, software" doc:"problem classes reported to the postmaster"`
	BounceNoticeRecipient    string   `pf:"bounce_notice_recipient" def:"postmaster" doc:"receives bounce notices for notify_classes bounce"`
	TwoBounceNoticeRecipient string   `pf:"2bounce_notice_recipient" def:"postmaster" doc:"receives undeliverable bounces"`
	DelayNoticeRecipient     string   `pf:"delay_notice_recipient" def:"postmaster" doc:"receives delay notices for notify_classes delay"`
	ErrorNoticeRecipient     string   `pf:"error_notice_recipient" def:"postmaster" doc:"receives protocol, policy, resource and software notices"`
	BounceSizeLimit          int      `pf:"bounce_size_limit" def:"50000" doc:"most bytes of the original message returned in a bounce"`
	BounceTemplateFile       string   `pf:"bounce_template_file" kind:"path" def:"" doc:"bounce(5) templates replacing the text of notices (empty: Postfix's)"`
	DoubleBounceSender       string   `pf:"double_bounce_sender" def:"double-bounce" doc:"sender of postmaster notices; mail to it is discarded"`

	// lmtp client.
	LMTPLhloName        string        `pf:"lmtp_lhlo_name" def:"$myhostname" doc:"name sent in LHLO"`
	LMTPConnectTimeout  time.Duration `pf:"lmtp_connect_timeout" unit:"s" def:"0s" doc:"time limit for connecting to an LMTP server (0 = the system's)"`
	LMTPLhloTimeout     time.Duration `pf:"lmtp_lhlo_timeout" unit:"s" def:"300s" doc:"time limit for the greeting and LHLO reply"`
	LMTPMailTimeout     time.Duration `pf:"lmtp_mail_timeout" unit:"s" def:"300s" doc:"time limit for the MAIL FROM reply"`
	LMTPRcptTimeout     time.Duration `pf:"lmtp_rcpt_timeout" unit:"s" def:"300s" doc:"time limit for each RCPT TO reply"`
	LMTPDataInitTimeout time.Duration `pf:"lmtp_data_init_timeout" unit:"s" def:"120s" doc:"time limit for the DATA reply"`
	LMTPDataXferTimeout time.Duration `pf:"lmtp_data_xfer_timeout" unit:"s" def:"180s" doc:"time limit for sending each piece of content"`
	LMTPDataDoneTimeout time.Duration `pf:"lmtp_data_done_timeout" unit:"s" def:"600s" doc:"time limit for the replies after the final dot"`
	LMTPQuitTimeout     time.Duration `pf:"lmtp_quit_timeout" unit:"s" def:"300s" doc:"time limit for the QUIT reply"`

	// smtp client.
	SMTPHeloName                  string        `pf:"smtp_helo_name" def:"$myhostname" doc:"name sent in EHLO/HELO"`
	SMTPBindAddress               string        `pf:"smtp_bind_address" def:"" doc:"local IPv4 address for outgoing connections"`
	SMTPConnectTimeout            time.Duration `pf:"smtp_connect_timeout" unit:"s" def:"30s" doc:"time limit for connecting to a server"`
	SMTPHeloTimeout               time.Duration `pf:"smtp_helo_timeout" unit:"s" def:"300s" doc:"time limit for the greeting and EHLO reply"`
	SMTPMailTimeout               time.Duration `pf:"smtp_mail_timeout" unit:"s" def:"300s" doc:"time limit for the MAIL FROM reply"`
	SMTPRcptTimeout               time.Duration `pf:"smtp_rcpt_timeout" unit:"s" def:"300s" doc:"time limit for each RCPT TO reply"`
	SMTPDataInitTimeout           time.Duration `pf:"smtp_data_init_timeout" unit:"s" def:"120s" doc:"time limit for the DATA reply"`
	SMTPDataXferTimeout           time.Duration `pf:"smtp_data_xfer_timeout" unit:"s" def:"180s" doc:"time limit for sending each piece of content"`
	SMTPDataDoneTimeout           time.Duration `pf:"smtp_data_done_timeout" unit:"s" def:"600s" doc:"time limit for the reply after the final dot"`
	SMTPQuitTimeout               time.Duration `pf:"smtp_quit_timeout" unit:"s" def:"300s" doc:"time limit for the QUIT reply"`
	SMTPMxAddressLimit            int           `pf:"smtp_mx_address_limit" def:"5" doc:"most MX addresses tried per delivery"`
	SMTPMxSessionLimit            int           `pf:"smtp_mx_session_limit" def:"2" doc:"most SMTP sessions per delivery"`
	SMTPConnectionCacheOnDemand   bool          `pf:"smtp_connection_cache_on_demand" def:"yes" doc:"keep connections open for destinations with a backlog"`
	SMTPConnectionReuseCountLimit int           `pf:"smtp_connection_reuse_count_limit" def:"0" doc:"most uses of a cached connection (0 = no limit)"`
	SMTPConnectionReuseTimeLimit  time.Duration `pf:"smtp_connection_reuse_time_limit" unit:"s" def:"300s" doc:"how long a cached connection is reused"`
	SMTPTLSSecurityLevel          string        `pf:"smtp_tls_security_level" def:"" enum:"|none|may|encrypt|dane|dane-only|fingerprint|verify|secure" doc:"client TLS policy (empty = none)"`
	SMTPTLSFingerprintCertMatch   []string      `pf:"smtp_tls_fingerprint_cert_match" def:"" doc:"certificate or public-key fingerprints accepted at level fingerprint"`
	SMTPTLSFingerprintDigest      string        `pf:"smtp_tls_fingerprint_digest" def:"sha256" enum:"md5|sha1|sha224|sha256|sha384|sha512" doc:"digest of the fingerprints at level fingerprint"`
	SMTPTLSCAfile                 string        `pf:"smtp_tls_CAfile" kind:"path" def:"" doc:"trusted CA certificates for verify and secure"`
	SMTPTLSCApath                 string        `pf:"smtp_tls_CApath" kind:"path" def:"" doc:"directory of trusted CA certificates"`
	SMTPTLSPolicyMaps             []string      `pf:"smtp_tls_policy_maps" kind:"maps" def:"" doc:"per-destination TLS policy"`
	SMTPTLSProtocols              []string      `pf:"smtp_tls_protocols" def:">=TLSv1" doc:"TLS versions with opportunistic TLS"`
	SMTPTLSMandatoryProtocols     []string      `pf:"smtp_tls_mandatory_protocols" def:">=TLSv1" doc:"TLS versions when TLS is required"`
	SMTPTCPPort                   string        `pf:"smtp_tcp_port" def:"smtp" doc:"port of remote SMTP servers (a number or a service name)"`
	SMTPSkip5xxGreeting           bool          `pf:"smtp_skip_5xx_greeting" def:"yes" doc:"treat a 5xx greeting as a temporary failure and try the next server"`
	SMTPRandomizeAddresses        bool          `pf:"smtp_randomize_addresses" def:"yes" doc:"shuffle MX hosts of equal preference"`
	SMTPAddressPreference         string        `pf:"smtp_address_preference" def:"any" enum:"any|ipv4|ipv6" doc:"which address family to try first"`
	SMTPLineLengthLimit           int           `pf:"smtp_line_length_limit" def:"998" doc:"longer lines are folded when sent"`
	SMTPConnectionCacheTimeLimit  time.Duration `pf:"smtp_connection_cache_time_limit" unit:"s" def:"2s" doc:"how long an idle cached connection is kept"`
	SMTPConnectionCacheDests      []string      `pf:"smtp_connection_cache_destinations" def:"" doc:"destinations whose connections are always cached"`
	SMTPSASLAuthEnable            bool          `pf:"smtp_sasl_auth_enable" def:"no" doc:"authenticate to remote servers"`
	SMTPSASLPasswordMaps          []string      `pf:"smtp_sasl_password_maps" kind:"maps" def:"" doc:"username:password per relayhost or domain"`
	SMTPSASLMechanismFilter       []string      `pf:"smtp_sasl_mechanism_filter" def:"" doc:"SASL mechanisms the client may use (empty = any it knows)"`
	SMTPSASLSecurityOptions       []string      `pf:"smtp_sasl_security_options" def:"noplaintext, noanonymous" doc:"SASL restrictions without TLS"`
	SMTPSASLTLSSecurityOptions    []string      `pf:"smtp_sasl_tls_security_options" def:"noanonymous" doc:"SASL restrictions over TLS (mailsrv: plain-text mechanisms are allowed over TLS)"`
	SMTPTLSVerifyCertMatch        []string      `pf:"smtp_tls_verify_cert_match" def:"hostname" doc:"names a certificate must match at level verify"`
	SMTPTLSSecureCertMatch        []string      `pf:"smtp_tls_secure_cert_match" def:"nexthop, dot-nexthop" doc:"names a certificate must match at level secure"`
	SMTPTLSLoglevel               int           `pf:"smtp_tls_loglevel" def:"0" doc:"TLS logging detail"`
	DNSServers                    []string      `pf:"mailsrv_dns_servers" def:"" doc:"mailsrv only: DNS servers (host:port) for the smtp client; empty = those of /etc/resolv.conf"`

	// values holds every expanded value of this scope in main.cf form,
	// including per-transport parameters (see Lookup, TransportInt).
	values map[string]string
}
