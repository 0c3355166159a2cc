package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"reflect"
	"strconv"
	"strings"
	"syscall"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/lockstepd/lockstep/client"
)

// Exit codes of the client commands, beyond exitOK, exitError, exitUsage.
const (
	exitHeld        = 2   // --wait ran out (or was 0) and someone else holds it
	exitSessionLost = 3   // the session was lost while the command ran
	exitInterrupted = 130 // interrupted (SIGINT/SIGTERM) before the command started
)

const defaultEndpoint = "http://127.0.0.1:8080"

// common holds the flags every client command takes.
type common struct {
	fs        *flag.FlagSet
	endpoints string
	output    string
	owner     string
	ttl       time.Duration // the session's lease, for the commands that open one
	// The credentials for a secured cluster (docs/security.md).
	cacert, cert, key, apiKey string
	insecure                  bool
	stdout                    io.Writer
	stderr                    io.Writer
}

// opensSession lists the commands that hold or wait through a session of
// their own, the only ones whose -owner means something.
var opensSession = map[string]bool{"lock": true, "sem": true, "rwlock": true, "barrier": true, "elect": true}

// newCommand makes the flag set of a client command; help is printed for -h
// (usage line, what it does, examples).
func newCommand(name, help string, stdout, stderr io.Writer) *common {
	c := &common{fs: flag.NewFlagSet("lockstep "+name, flag.ContinueOnError), stdout: stdout, stderr: stderr}
	env := os.Getenv("LOCKSTEP_ENDPOINTS")
	if env == "" {
		env = defaultEndpoint
	}
	c.fs.SetOutput(stderr)
	c.fs.StringVar(&c.endpoints, "endpoints", env, "comma-separated API `URLs` of the cluster (env LOCKSTEP_ENDPOINTS)")
	c.fs.StringVar(&c.output, "o", "table", "output `format`: table or json")
	if opensSession[name] {
		c.fs.StringVar(&c.owner, "owner", "", "the `label` shown as holder in status (default HOST/pid-PID)")
		c.fs.DurationVar(&c.ttl, "ttl", 15*time.Second, "the session's lease: how long what it holds survives once this process stops renewing it (at least 1s)")
	}
	c.fs.StringVar(&c.cacert, "cacert", os.Getenv("LOCKSTEP_CACERT"), "the cluster's CA certificate `file` for https:// endpoints (env LOCKSTEP_CACERT)")
	c.fs.StringVar(&c.cert, "cert", os.Getenv("LOCKSTEP_CERT"), "a client certificate `file` for mutual TLS (env LOCKSTEP_CERT)")
	c.fs.StringVar(&c.key, "key", os.Getenv("LOCKSTEP_KEY"), "the client certificate's key `file` (env LOCKSTEP_KEY)")
	c.fs.StringVar(&c.apiKey, "api-key", os.Getenv("LOCKSTEP_API_KEY"), "an API `key`, sent as Authorization: Bearer (env LOCKSTEP_API_KEY; prefer the env: flags show in ps)")
	c.fs.BoolVar(&c.insecure, "insecure", os.Getenv("LOCKSTEP_INSECURE") == "true",
		"send the API key over http:// to servers on other machines, where the network encrypts by itself (env LOCKSTEP_INSECURE=true); refused otherwise")
	c.fs.Usage = func() {
		fmt.Fprint(c.fs.Output(), strings.TrimLeft(help, "\n"))
		fmt.Fprintln(c.fs.Output(), "\nFlags:")
		c.fs.PrintDefaults()
	}
	return c
}

// parse parses flags that may come before, between or after the positional
// arguments, up to "--"; what follows "--" is the command to run.
func (c *common) parse(args []string) (pos, command []string, code int, ok bool) {
	for {
		if err := c.fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, nil, exitOK, false
			}
			return nil, nil, exitUsage, false
		}
		rest := c.fs.Args()
		used := len(args) - len(rest)
		if used > 0 && args[used-1] == "--" {
			command = rest
			break
		}
		if len(rest) == 0 {
			break
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
	if c.output != "table" && c.output != "json" {
		c.usageErr("-o %q: use table or json", c.output)
		return nil, nil, exitUsage, false
	}
	if c.fs.Lookup("ttl") != nil && c.ttl < client.MinTTL {
		c.usageErr("--ttl %v is below the minimum %v: a lease must leave room for a keepalive round and a failover to another endpoint", c.ttl, client.MinTTL)
		return nil, nil, exitUsage, false
	}
	return pos, command, 0, true
}

func (c *common) usageErr(format string, a ...any) int {
	fmt.Fprintf(c.stderr, "%s: %s\nRun '%s -h' for usage and examples.\n", c.fs.Name(), fmt.Sprintf(format, a...), c.fs.Name())
	return exitUsage
}

// fail prints err with the next step to take, and answers exitError, or
// exitUsage when the arguments were refused (refusedArguments): bad usage,
// whether the client or the servers found it.
func (c *common) fail(err error) int {
	return c.failWith(err, hintFor(err, c.endpoints, c.cert != ""))
}

// failWith is fail with the next step given: hint ("": none).
func (c *common) failWith(err error, hint string) int {
	msg := err.Error()
	if i := strings.Index(msg, client.ErrUnavailable.Error()); i >= 0 {
		// Which internal call found no server says nothing to the user.
		msg = msg[i:]
	}
	msg = strings.TrimPrefix(msg, "lockstep: ") // the command's name says it already
	fmt.Fprintf(c.stderr, "%s: %s\n", c.fs.Name(), msg)
	if hint != "" {
		fmt.Fprintln(c.stderr, hint)
	}
	if refusedArguments(err) {
		return exitUsage
	}
	return exitError
}

// refusedArguments says whether err refuses the command's arguments, the
// same for every command: as malformed (invalid_argument,
// client.ErrInvalid: an empty or over-long name, a bound out of range), or
// as at odds with the object they name (failed_precondition,
// client.ErrPrecondition: a barrier waited on with other --parties than
// its own, a semaphore with another --limit, a set/remove barrier, a
// transfer to a node that is no member). Both are bad usage, exit 2, as
// the command's own refusals are; the latter was exit 1 while its hint
// said to fix the arguments. A failed_precondition that no argument
// mends is not: a request id the servers forgot or saw for another
// request (the client's, not the user's), or rules the cluster has not
// upgraded to yet (retry later).
func refusedArguments(err error) bool {
	msg := err.Error()
	switch {
	case errors.Is(err, client.ErrInvalid), connect.CodeOf(err) == connect.CodeInvalidArgument,
		strings.Contains(msg, "invalid_argument"):
		return true
	case errors.Is(err, client.ErrPrecondition), connect.CodeOf(err) == connect.CodeFailedPrecondition,
		strings.Contains(msg, "failed_precondition"):
		return !strings.Contains(msg, "request_seq") && !strings.Contains(msg, "needs rules")
	}
	return false
}

// hintFor says what to do next for the errors people meet; certGiven says
// whether the command was given a client certificate (--cert,
// LOCKSTEP_CERT).
func hintFor(err error, endpoints string, certGiven bool) string {
	switch {
	case connect.IsWireError(err) && connect.CodeOf(err) == connect.CodeUnauthenticated && strings.Contains(err.Error(), "client certificate"):
		// The server answered (401): the handshake went through, and its
		// message may quote x509's words about the certificate it refused,
		// or ask for one (security.tls.client_auth require), or for one or
		// an API key, from a command given none.
		if !certGiven {
			return credentialsWanted(err)
		}
		if strings.Contains(err.Error(), "client certificate expired") {
			return "The cluster refused the client certificate (--cert, LOCKSTEP_CERT): it expired. Renew it (lockstep certs client NAME " +
				"--valid-for D, or your PKI) and run the command again with the new one."
		}
		return "The cluster refused the client certificate (--cert, LOCKSTEP_CERT): give one the cluster's CA signed for clients (lockstep certs client), or an API key with --api-key (LOCKSTEP_API_KEY)."
	case strings.Contains(err.Error(), "server gave HTTP response to HTTPS client"):
		return "The server serves plaintext, without TLS: use http:// endpoints (--endpoints, LOCKSTEP_ENDPOINTS), or turn TLS on at the servers (docs/security.md)."
	case strings.Contains(err.Error(), "400 Bad Request") && strings.Contains(endpoints, "http://"):
		// Go's TLS server answers a plaintext request with a bare 400; the
		// API's own refusals carry a code.
		return "The server refused a plaintext request: if the cluster serves TLS, use https:// endpoints (--endpoints, LOCKSTEP_ENDPOINTS) and give its CA with --cacert."
	case isTLSErr(err):
		return "TLS failed: give the cluster's CA with --cacert (LOCKSTEP_CACERT), a client certificate with --cert and --key if it asks for one, and check the endpoint is https://."
	case strings.Contains(err.Error(), "leadership did not move"):
		return "" // the servers' words say it
	case errors.Is(err, client.ErrUnavailable) && !unreached(err):
		// The last endpoint answered, with a 503 of its own.
		return "The servers answered but cannot serve now (no leader or no quorum, or shutting down): check 'lockstep cluster status', bring back the members that are down, and try again."
	case errors.Is(err, client.ErrUnavailable):
		return fmt.Sprintf("No server answered at %s. Is 'lockstep serve' running there? Set --endpoints or LOCKSTEP_ENDPOINTS to the cluster's API addresses.", endpoints)
	case errors.Is(err, client.ErrSessionLost):
		return "The session ended (expired or closed); anything it held is released. Run the command again; raise --ttl if the network is slow."
	case errors.Is(err, client.ErrNotHeld):
		return "The grant is gone (released or expired); check 'lockstep status NAME'."
	case strings.Contains(err.Error(), "unauthenticated"):
		return "The cluster wants credentials: --api-key (LOCKSTEP_API_KEY), or --cert and --key (LOCKSTEP_CERT, LOCKSTEP_KEY) with --cacert for https://."
	case connect.CodeOf(err) == connect.CodePermissionDenied, strings.Contains(err.Error(), "permission_denied"):
		return "Your principal may not do this: ask for a rule in security.acl (docs/security.md)."
	case refusedArguments(err):
		return "The server refused the request as given; fix the arguments (see -h)."
	}
	return ""
}

// credentialsWanted is the hint for a 401 to a command given no client
// certificate, whose message names one: the credentials it asks for, a
// client certificate alone (security.tls.client_auth require) or either
// that or an API key.
func credentialsWanted(err error) string {
	const cert = "a client certificate the cluster's CA signed for clients (--cert and --key, LOCKSTEP_CERT and LOCKSTEP_KEY; lockstep certs client makes one)"
	if strings.Contains(err.Error(), "API key") {
		return "The cluster wants credentials: " + cert + ", or an API key (--api-key, LOCKSTEP_API_KEY)."
	}
	return "The cluster wants credentials: " + cert + "."
}

// unreached says whether the last attempt behind an ErrUnavailable found
// no server at all (the client keeps only the last error's words): a
// connection refused or reset, no route, a name that does not resolve, or
// silence, as against a server's own 503.
func unreached(err error) bool {
	msg := err.Error()
	for _, s := range []string{"endpoint(s) answered", "dial tcp", "connection refused", "connection reset", "no such host", "no route to host",
		"i/o timeout", "deadline_exceeded", "EOF", "broken pipe", "network is unreachable"} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}

// retryBudget is how long a request keeps trying endpoints that do not
// answer: 10 s, so that a command against a cluster that is down fails
// soon, but for a command that holds a session (--ttl) at least its lease.
// The servers keep the session through an outage (a new leader extends
// every lease), and the client takes it for lost only once a lease passes
// unanswered, so a waiting `lockstep lock` rides out a restart of the
// whole cluster as its holder does, rather than give up its place after
// 10 s.
func (c *common) retryBudget() time.Duration {
	const quick = 10 * time.Second
	if c.fs.Lookup("ttl") != nil && c.ttl > quick {
		return c.ttl
	}
	return quick
}

func (c *common) client() (*client.Client, error) {
	var eps []string
	for _, e := range strings.Split(c.endpoints, ",") {
		if e = strings.TrimSpace(e); e != "" {
			eps = append(eps, e)
		}
	}
	opts := []client.Option{client.WithRetryTimeout(c.retryBudget())}
	if c.cacert != "" {
		opts = append(opts, client.WithCAFile(c.cacert))
	}
	if (c.cert == "") != (c.key == "") {
		return nil, errors.New("--cert and --key go together (or LOCKSTEP_CERT and LOCKSTEP_KEY)")
	}
	if c.cert != "" {
		opts = append(opts, client.WithClientCert(c.cert, c.key))
	}
	if c.apiKey != "" {
		opts = append(opts, client.WithAPIKey(c.apiKey))
	}
	if c.insecure {
		opts = append(opts, client.WithPlaintextAPIKey())
	}
	return client.New(eps, opts...)
}

func (c *common) session(ctx context.Context, cl *client.Client) (*client.Session, error) {
	opts := []client.SessionOption{client.WithTTL(c.ttl)}
	if c.owner != "" {
		opts = append(opts, client.WithOwner(c.owner))
	}
	return cl.NewSession(ctx, opts...)
}

func (c *common) json(v any) {
	enc := json.NewEncoder(c.stdout)
	enc.SetIndent("", "  ")
	_ = enc.Encode(jsonSafe(reflect.ValueOf(v)))
}

// jsonSafe rebuilds v for encoding with every 64-bit integer (fencing
// tokens, session ids, times in ms) as a decimal string, as the REST API
// writes them: JavaScript and jq read JSON numbers as doubles and would lose
// the low digits of a token above 2^53. Durations and values with their
// own JSON form (times) stay as they are.
func jsonSafe(v reflect.Value) any {
	if !v.IsValid() {
		return nil
	}
	if v.Type() == reflect.TypeFor[time.Duration]() {
		return v.Interface()
	}
	if v.CanInterface() {
		switch x := v.Interface().(type) {
		case proto.Message:
			// As the REST API writes it: proto names, zero values said
			// (shard_id 0 included), 64-bit integers as strings.
			if b, err := (protojson.MarshalOptions{UseProtoNames: true, EmitUnpopulated: true}).Marshal(x); err == nil {
				return json.RawMessage(b)
			}
		case json.Marshaler:
			return x
		}
	}
	switch v.Kind() {
	case reflect.Int64:
		return strconv.FormatInt(v.Int(), 10)
	case reflect.Uint64:
		return strconv.FormatUint(v.Uint(), 10)
	case reflect.Pointer, reflect.Interface:
		if v.IsNil() {
			return nil
		}
		return jsonSafe(v.Elem())
	case reflect.Slice, reflect.Array:
		if v.Kind() == reflect.Slice && v.IsNil() {
			return nil
		}
		if v.Type().Elem().Kind() == reflect.Uint8 {
			return v.Interface() // bytes: base64, as encoding/json writes them
		}
		out := make([]any, v.Len())
		for i := range out {
			out[i] = jsonSafe(v.Index(i))
		}
		return out
	case reflect.Map:
		if v.IsNil() {
			return nil
		}
		out := make(map[string]any, v.Len())
		for it := v.MapRange(); it.Next(); {
			out[fmt.Sprint(it.Key().Interface())] = jsonSafe(it.Value())
		}
		return out
	case reflect.Struct:
		out := make(map[string]any, v.NumField())
		for i := range v.NumField() {
			f := v.Type().Field(i)
			if !f.IsExported() {
				continue
			}
			name, opts, _ := strings.Cut(f.Tag.Get("json"), ",")
			if name == "-" {
				continue
			}
			if name == "" {
				name = f.Name
			}
			if strings.Contains(opts, "omitempty") && v.Field(i).IsZero() {
				continue
			}
			out[name] = jsonSafe(v.Field(i))
		}
		return out
	}
	return v.Interface()
}

// interrupted returns a context cancelled by SIGINT or SIGTERM.
func interrupted() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
}

// cleanupCtx bounds releases and closes done on the way out.
func cleanupCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), 10*time.Second)
}
