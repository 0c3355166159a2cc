package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/lockstepd/lockstep/config"
	"github.com/lockstepd/lockstep/security"
)

// startSecurity makes the node's security state and audit log (nil without
// security.audit), and says at every start what is open.
//
// mat is the material the configuration's load read and checked
// (config.Config.LoadMaterial: a client's certificate, or one without the
// raft_address host, is refused), put in force as it is, not read again:
// the API, metrics and Raft ports all take it from the state.
func startSecurity(cfg config.Config, mat *config.Material, reg prometheus.Registerer, log *slog.Logger) (*security.State, *security.AuditLog, error) {
	m, err := security.NewMetrics(reg)
	if err != nil {
		return nil, nil, err
	}
	sec, err := security.NewChecked(cfg.Security, mat, m, log)
	if err != nil {
		return nil, nil, err
	}
	if open := cfg.Plaintext(); len(open) > 0 {
		log.Warn("serving plaintext on addresses that are not loopback (security.insecure): anyone on the network can read and forge requests and Raft traffic; set security.tls (docs/security.md)",
			"addresses", strings.Join(open, ","))
	}
	if sec.AuthOn() && sec.ACLOpen() {
		log.Info("security.acl is absent: every authenticated principal may do everything")
	}
	if !sec.AuthOn() && cfg.Security.TLS != nil {
		log.Warn("TLS without client authentication: every caller may do everything; set security.tls.client_auth or security.api_keys_file")
	}
	var audit *security.AuditLog
	if a := cfg.Security.Audit; a != nil {
		audit = security.OpenAudit(*a, cfg.Cluster.NodeID, m, log)
	}
	return sec, audit, nil
}

// reloadOnHangup, on SIGHUP, reopens the audit log (nil: none) and
// reloads the certificate, the CA, the API keys file, the ACL and the log
// level, from the configuration file read again (hangup).
func reloadOnHangup(f *serveFlags, running config.Config, sec *security.State, audit *security.AuditLog, members func() int, log *slog.Logger, stop <-chan struct{}) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		select {
		case <-stop:
			return
		case <-hup:
		}
		hangup(f, running, sec, audit, members, log)
	}
}

// hangup is one SIGHUP. The audit log is reopened first, whatever the
// reload does: after an outside rotation (logrotate without copytruncate
// moved the file) its lines go to a new file at security.audit.path, not
// on into the moved one. Then the reload: one that fails keeps the
// settings in force and says why. The certificate and CA serve the API,
// metrics and Raft ports alike (security.State.Credentials): new
// connections on each take them.
func hangup(f *serveFlags, running config.Config, sec *security.State, audit *security.AuditLog, members func() int, log *slog.Logger) {
	reopened := ""
	if audit != nil {
		path := running.Security.Audit.Path
		if err := audit.Reopen(); err != nil {
			log.Error("SIGHUP: the audit log could not be reopened: every request is refused (503) until it can be written", "path", path, "err", err)
		} else {
			reopened = path
		}
	}
	// One line says what the SIGHUP did: the reopen is in the reload's
	// line when there is one.
	logReopened := func() {
		if reopened != "" {
			log.Info("SIGHUP: reopened the audit log", "path", reopened)
		}
	}
	if f.configFile == "" {
		logReopened()
		log.Warn("SIGHUP: nothing to reload without --config")
		return
	}
	var before slog.Level
	if f.level != nil {
		before = f.level.Level()
	}
	c, warnings, err := reload(f, sec, running, members)
	if f.level != nil && f.level.Level() > before {
		// Raised (to warn, say): the lines that say so are still written,
		// at the level they had before.
		after := f.level.Level()
		f.level.Set(before)
		defer f.level.Set(after)
	}
	if err != nil {
		logReopened()
		log.Error("SIGHUP: reload failed; the security settings in force are kept", "err", err)
		auditReload(audit, f.configFile, "", err, log)
		return
	}
	for _, w := range warnings {
		log.Warn("SIGHUP: " + w)
	}
	c.AuditReopened = reopened
	log.Info("SIGHUP: reloaded the security settings: "+c.String(), "config", f.configFile)
	auditReload(audit, f.configFile, c.String(), nil, log)
}

// securityAtStart are the keys of the security settings that differ
// between was (what the member started with) and now, and that a reload
// leaves as they were: the stream bound, the audit log's file and rotation,
// and client_auth (whether TLS and API keys are on at all a reload refuses
// to change: security.State.ReloadMaterial).
func securityAtStart(was, now config.Security) []string {
	var keys []string
	if was.TLS != nil && now.TLS != nil && was.TLS.ClientAuth != now.TLS.ClientAuth {
		keys = append(keys, "security.tls.client_auth")
	}
	if was.StreamsPerPrincipal() != now.StreamsPerPrincipal() {
		keys = append(keys, "security.max_streams_per_principal")
	}
	var a, b config.Audit
	if was.Audit != nil {
		a = *was.Audit
	}
	if now.Audit != nil {
		b = *now.Audit
	}
	if (was.Audit == nil) != (now.Audit == nil) || a != b {
		keys = append(keys, "security.audit")
	}
	return keys
}

// auditReload records the reload in the audit log (nil: none).
func auditReload(audit *security.AuditLog, file, changes string, err error, log *slog.Logger) {
	if audit == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if werr := audit.Reloaded(ctx, file, changes, err); werr != nil {
		log.Error("SIGHUP: the reload could not be recorded in the audit log", "err", werr)
	}
}

// members is how many members the cluster has now (nil: as the file
// says): a member started alone and grown by AddNode has peers its file
// does not list, and they need of its certificate what any member's must
// give (client use, its raft_address host), as AddNode checked. It
// answers what changed and the warnings about the files put in force
// (config.Security.Warnings).
func reload(f *serveFlags, sec *security.State, running config.Config, members func() int) (security.Changes, []string, error) {
	cfg, err := config.Read(f.configFile)
	if err != nil {
		return security.Changes{}, nil, err
	}
	if err := f.applyOverrides(&cfg); err != nil {
		return security.Changes{}, nil, err
	}
	if err := cfg.Validate(); err != nil {
		return security.Changes{}, nil, fmt.Errorf("configuration: %w", err)
	}
	var restart []string
	if keys := config.Changed(f.readAtStart, cfg); len(keys) > 0 {
		// A reload puts only security and log.level in force: a change elsewhere waited,
		// unsaid, for the next restart, which took it up unannounced.
		restart = append(restart, fmt.Sprintf("%s changed in %s: a reload puts only security and log.level in force, so the member runs "+
			"with the values it started with until it is restarted (docs/operations.md, Configuration)", strings.Join(keys, ", "), f.configFile))
	}
	if keys := securityAtStart(running.Security, cfg.Security); len(keys) > 0 {
		// Unsaid, a reload's line ended "nothing else changed" while the
		// member went on with the old limit or rotation.
		restart = append(restart, fmt.Sprintf("%s changed in %s: these are read only at start, so the member runs with the values it started "+
			"with until it is restarted; the rest of the security settings are put in force (docs/security.md, Rotating certificates and keys)",
			strings.Join(keys, ", "), f.configFile))
	}
	// The checks a start makes of the member's own certificate too (a
	// client's, or one without the raft_address host, would cut the member
	// off from new peers' connections), against the cluster settings it
	// runs with (they change only at a restart); what is put in force is
	// what was checked, not a second read of the files.
	check := running
	check.Security = cfg.Security
	m, err := check.LoadMaterial(time.Now())
	if err != nil {
		return security.Changes{}, nil, fmt.Errorf("configuration: %w", err)
	}
	if m.Cert != nil && members != nil && members() > 1 {
		if err := check.CheckPeerCertificate(m.Cert.Leaf); err != nil {
			return security.Changes{}, nil, fmt.Errorf("configuration: %w (this member has peers now)", err)
		}
	}
	level, err := cfg.Log.SlogLevel()
	if err != nil {
		return security.Changes{}, nil, fmt.Errorf("configuration: %w", err) // Validate said so already
	}
	c, err := sec.ReloadMaterial(cfg.Security, m)
	if err == nil && f.level != nil && f.level.Level() != level {
		// The one setting outside security a reload puts in force: debug
		// lines while something is wrong, without a restart.
		c.LogLevel = strings.ToLower(f.level.Level().String()) + " -> " + strings.ToLower(level.String())
		f.level.Set(level)
	}
	return c, append(restart, cfg.Security.Warnings()...), err
}
