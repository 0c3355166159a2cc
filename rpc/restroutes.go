package rpc

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"

	"google.golang.org/genproto/googleapis/api/annotations"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/dynamicpb"
)

// The REST routes whose JSON body may repeat a path variable, read once
// from the same google.api.http annotations vanguard routes by, so that
// every route is covered, the session ids of /sessions/{session_id}/...
// as much as the names of /locks/{name}/..., and a route added to a .proto
// file is covered without a change here. checkRESTBody uses them.

// restRoute is one REST path template whose request takes the whole body
// (body: "*") and has path variables.
type restRoute struct {
	method  string
	pattern string // as annotated, for messages and tests
	// segments are the template's path segments: a literal, or "" where a
	// variable is (vars says which field).
	segments []string
	vars     map[int]protoreflect.FieldDescriptor
	input    protoreflect.MessageType
}

// restRoutes are the routes of serviceNames, built once. An annotation this
// code cannot read exactly is an error that New returns, rather than a
// route left unchecked.
var restRoutes = sync.OnceValues(func() ([]restRoute, error) {
	return buildRESTRoutes(serviceNames)
})

func buildRESTRoutes(services []string) ([]restRoute, error) {
	var out []restRoute
	for _, name := range services {
		d, err := protoregistry.GlobalFiles.FindDescriptorByName(protoreflect.FullName(name))
		if err != nil {
			return nil, fmt.Errorf("rpc: service %s is not registered: %v", name, err)
		}
		methods := d.(protoreflect.ServiceDescriptor).Methods()
		for i := range methods.Len() {
			md := methods.Get(i)
			rule, _ := proto.GetExtension(md.Options(), annotations.E_Http).(*annotations.HttpRule)
			if rule == nil {
				continue
			}
			for _, r := range append([]*annotations.HttpRule{rule}, rule.GetAdditionalBindings()...) {
				rt, ok, err := restRouteOf(md, r)
				if err != nil {
					return nil, err
				}
				if ok {
					out = append(out, rt)
				}
			}
		}
	}
	sortRESTRoutes(out)
	return out, nil
}

// sortRESTRoutes puts routes in the order matchRESTRoute tries them.
// Vanguard's router prefers a literal segment to a variable, segment by
// segment; trying routes in this order finds the route it finds.
func sortRESTRoutes(routes []restRoute) {
	slices.SortStableFunc(routes, func(a, b restRoute) int {
		return strings.Compare(a.shape(), b.shape())
	})
}

// restRouteOf reads one binding. ok is false for a binding that needs no
// check: one without path variables, or without a body.
func restRouteOf(md protoreflect.MethodDescriptor, r *annotations.HttpRule) (rt restRoute, ok bool, err error) {
	var method, path string
	switch p := r.GetPattern().(type) {
	case *annotations.HttpRule_Get:
		method, path = "GET", p.Get
	case *annotations.HttpRule_Post:
		method, path = "POST", p.Post
	case *annotations.HttpRule_Put:
		method, path = "PUT", p.Put
	case *annotations.HttpRule_Delete:
		method, path = "DELETE", p.Delete
	case *annotations.HttpRule_Patch:
		method, path = "PATCH", p.Patch
	default:
		return rt, false, fmt.Errorf("rpc: %s: a google.api.http pattern of type %T is not supported", md.FullName(), p)
	}
	where := fmt.Sprintf("rpc: %s: REST route %s %s", md.FullName(), method, path)
	switch r.GetBody() {
	case "":
		// No body: restFront refuses one on GET and DELETE.
		return rt, false, nil
	case "*":
	default:
		// A body that is one field would hold the path variables one
		// level down; checkRESTBody reads the top level only.
		return rt, false, fmt.Errorf("%s: body %q is not supported (only \"*\" or none)", where, r.GetBody())
	}
	if !strings.HasPrefix(path, "/") || strings.Contains(path, ":") {
		return rt, false, fmt.Errorf("%s: only a path of literal segments and {field} variables is supported", where)
	}
	input, err := protoregistry.GlobalTypes.FindMessageByName(md.Input().FullName())
	if err != nil {
		input = dynamicpb.NewMessageType(md.Input())
	}
	rt = restRoute{method: method, pattern: path, input: input, vars: map[int]protoreflect.FieldDescriptor{}}
	for _, seg := range strings.Split(path[1:], "/") {
		if !strings.HasPrefix(seg, "{") {
			if seg == "" || strings.ContainsAny(seg, "{}*=%") {
				return rt, false, fmt.Errorf("%s: segment %q: only a path of literal segments and {field} variables is supported", where, seg)
			}
			rt.segments = append(rt.segments, seg)
			continue
		}
		field, okVar := strings.CutSuffix(strings.TrimPrefix(seg, "{"), "}")
		if !okVar || field == "" || strings.ContainsAny(field, "{}*=./") {
			return rt, false, fmt.Errorf("%s: variable %q: only {field} of a top-level field is supported", where, seg)
		}
		fd := md.Input().Fields().ByName(protoreflect.Name(field))
		if fd == nil || fd.IsList() || fd.IsMap() || !pathVarKind(fd.Kind()) {
			return rt, false, fmt.Errorf("%s: variable %q is not a string or integer field of %s", where, seg, md.Input().FullName())
		}
		rt.vars[len(rt.segments)] = fd
		rt.segments = append(rt.segments, "")
	}
	return rt, len(rt.vars) > 0, nil
}

// pathVarKind says whether pathValue reads a path variable of this kind.
func pathVarKind(k protoreflect.Kind) bool {
	switch k {
	case protoreflect.StringKind,
		protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind,
		protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind,
		protoreflect.Uint32Kind, protoreflect.Fixed32Kind,
		protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return true
	}
	return false
}

// pathValue is the value vanguard sets from a path variable's unescaped
// text (its params.go: the text of a string, a JSON number otherwise). ok
// is false when vanguard would refuse the text, which it then does.
func pathValue(fd protoreflect.FieldDescriptor, s string) (v protoreflect.Value, ok bool) {
	switch fd.Kind() {
	case protoreflect.StringKind:
		return protoreflect.ValueOfString(s), true
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		var x int32
		ok = json.Unmarshal([]byte(s), &x) == nil
		return protoreflect.ValueOfInt32(x), ok
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		var x int64
		ok = json.Unmarshal([]byte(s), &x) == nil
		return protoreflect.ValueOfInt64(x), ok
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		var x uint32
		ok = json.Unmarshal([]byte(s), &x) == nil
		return protoreflect.ValueOfUint32(x), ok
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		var x uint64
		ok = json.Unmarshal([]byte(s), &x) == nil
		return protoreflect.ValueOfUint64(x), ok
	}
	return v, false
}

// matchRESTRoute finds the route of a request by its method and escaped
// path, split as vanguard splits it, and returns the path's raw segments.
func matchRESTRoute(routes []restRoute, method, escapedPath string) (*restRoute, []string) {
	if !strings.HasPrefix(escapedPath, "/") {
		return nil, nil
	}
	segs := strings.Split(escapedPath[1:], "/")
	if strings.Contains(segs[len(segs)-1], ":") {
		// A custom verb: no route here has one.
		return nil, nil
	}
next:
	for i := range routes {
		rt := &routes[i]
		if rt.method != method || len(rt.segments) != len(segs) {
			continue
		}
		for j, lit := range rt.segments {
			if lit != "" && lit != segs[j] {
				continue next
			}
		}
		return rt, segs
	}
	return nil, nil
}

// shape is the route's segments as "l" (literal) and "v" (variable), which
// sort in the order vanguard's router tries them.
func (rt *restRoute) shape() string {
	var b strings.Builder
	for _, seg := range rt.segments {
		if seg == "" {
			b.WriteByte('v')
		} else {
			b.WriteByte('l')
		}
	}
	return b.String()
}

// String is the route as annotated.
func (rt *restRoute) String() string { return rt.method + " " + rt.pattern }

// varNames lists the route's path variables by their proto names.
func (rt *restRoute) varNames() []string {
	var out []string
	for _, i := range slices.Sorted(func(yield func(int) bool) {
		for i := range rt.vars {
			if !yield(i) {
				return
			}
		}
	}) {
		out = append(out, string(rt.vars[i].Name()))
	}
	return out
}
