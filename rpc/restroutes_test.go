package rpc

import (
	"strings"
	"testing"

	"google.golang.org/genproto/googleapis/api/annotations"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
)

// The route table comes from the google.api.http annotations: every REST
// route with a body and path variables, names and session ids alike.
func TestRESTRoutesFromAnnotations(t *testing.T) {
	routes, err := restRoutes()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for i := range routes {
		got[routes[i].String()] = strings.Join(routes[i].varNames(), ",")
	}
	for route, vars := range map[string]string{
		"POST /locks/{name}/acquire":            "name",
		"POST /locks/{name}/release":            "name",
		"POST /locks/{name}/renew":              "name",
		"POST /semaphores/{name}/acquire":       "name",
		"POST /semaphores/{name}/release":       "name",
		"POST /rwlocks/{name}/acquire":          "name",
		"POST /rwlocks/{name}/release":          "name",
		"POST /barriers/{name}/wait":            "name",
		"POST /election/{name}/campaign":        "name",
		"POST /election/{name}/resign":          "name",
		"POST /sessions/{session_id}/keepalive": "session_id",
		"POST /sessions/{session_id}/abandon":   "session_id",
		"GET /locks/{name}/status":              "", // no body
		"DELETE /sessions/{session_id}":         "", // no body
		"POST /sessions":                        "", // no path variable
	} {
		if g, ok := got[route]; vars == "" && ok || vars != "" && g != vars {
			t.Errorf("%s: variables %q (listed %v), want %q", route, g, ok, vars)
		}
	}

	for _, tc := range []struct{ method, path, want string }{
		{"POST", "/locks/jobs%2Fok/acquire", "POST /locks/{name}/acquire"},
		{"POST", "/sessions/7/keepalive", "POST /sessions/{session_id}/keepalive"},
		{"POST", "/locks/a/acquire/", ""},
		{"POST", "/locks/a/acquire:x", ""},
		{"GET", "/locks/a/acquire", ""},
		{"POST", "/sessions", ""},
		{"POST", "locks/a/acquire", ""},
	} {
		rt, _ := matchRESTRoute(routes, tc.method, tc.path)
		if g := func() string {
			if rt == nil {
				return ""
			}
			return rt.String()
		}(); g != tc.want {
			t.Errorf("%s %s matched %q, want %q", tc.method, tc.path, g, tc.want)
		}
	}
}

// A literal segment wins over a variable, as in vanguard's router.
func TestRESTRoutesPreferLiterals(t *testing.T) {
	md := acquireDescriptor(t)
	var routes []restRoute
	for _, p := range []string{"/x/{name}/y", "/x/lit/{name}"} {
		rt, ok, err := restRouteOf(md, &annotations.HttpRule{Pattern: &annotations.HttpRule_Post{Post: p}, Body: "*"})
		if err != nil || !ok {
			t.Fatal(p, ok, err)
		}
		routes = append(routes, rt)
	}
	sortRESTRoutes(routes)
	if rt, _ := matchRESTRoute(routes, "POST", "/x/lit/y"); rt == nil || rt.pattern != "/x/lit/{name}" {
		t.Fatalf("matched %v", rt)
	}
}

// An annotation the check cannot read exactly fails New, rather than
// leaving its route unchecked.
func TestRESTRoutesRefuseWhatTheyCannotRead(t *testing.T) {
	md := acquireDescriptor(t)
	for _, tc := range []struct{ path, body string }{
		{"/locks/{name=**}/acquire", "*"},
		{"/locks/{holder.owner}/acquire", "*"},
		{"/locks/{name}:acquire", "*"},
		{"/locks/{nope}/acquire", "*"},
		{"/locks/{owner}/acquire", "holder"},
		{"/locks/*/acquire", "*"},
	} {
		_, _, err := restRouteOf(md, &annotations.HttpRule{Pattern: &annotations.HttpRule_Post{Post: tc.path}, Body: tc.body})
		if err == nil {
			t.Errorf("%s body %q: no error", tc.path, tc.body)
		}
	}
}

func acquireDescriptor(t *testing.T) protoreflect.MethodDescriptor {
	t.Helper()
	d, err := protoregistry.GlobalFiles.FindDescriptorByName("lockstep.v1.LockService.Acquire")
	if err != nil {
		t.Fatal(err)
	}
	return d.(protoreflect.MethodDescriptor)
}
