package rpc

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"connectrpc.com/connect"
	"connectrpc.com/vanguard"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/lockstepd/lockstep/internal/quote"
)

// docs/design.md wants JSON in the proto field names (fencing_token), while
// protojson, connect-go and vanguard all default to lowerCamelCase
// (fencingToken). Every JSON that leaves the server goes through one of the
// two codecs below. Both emit unpopulated fields, so that "acquired": false
// and "fencing_token": "0" are said rather than left out. Input accepts both
// spellings, as proto3 JSON always does.

var jsonOut = protojson.MarshalOptions{UseProtoNames: true, EmitUnpopulated: true}

// connectJSON is the Connect handlers' JSON codec (Connect JSON and
// gRPC-Web JSON clients). Unknown fields are discarded, as connect-go does by
// default, so that a client built from a newer schema still works.
type connectJSON struct{ name string }

// connectCodecs replaces both names under which connect-go registers JSON.
func connectCodecs() []connect.HandlerOption {
	return []connect.HandlerOption{
		connect.WithCodec(connectJSON{name: "json"}),
		connect.WithCodec(connectJSON{name: "json; charset=utf-8"}),
	}
}

func (c connectJSON) Name() string { return c.name }

func (c connectJSON) IsBinary() bool { return false }

func (c connectJSON) Marshal(msg any) ([]byte, error) {
	m, ok := msg.(proto.Message)
	if !ok {
		return nil, fmt.Errorf("json codec: %T is not a protobuf message", msg)
	}
	return jsonOut.Marshal(m)
}

func (c connectJSON) MarshalStable(msg any) ([]byte, error) {
	out, err := c.Marshal(msg)
	if err != nil {
		return nil, err
	}
	// protojson randomizes whitespace on purpose; compact it for stability.
	var buf bytes.Buffer
	if err := json.Compact(&buf, out); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func (c connectJSON) Unmarshal(data []byte, msg any) error {
	m, ok := msg.(proto.Message)
	if !ok {
		return fmt.Errorf("json codec: %T is not a protobuf message", msg)
	}
	if len(data) == 0 {
		return errors.New("the body is empty: send a JSON object, {} at least")
	}
	// protojson's DiscardUnknown also takes an unknown enum name as the
	// default value: "kind": "KIND_BOGUS" checked the mutex's fence and
	// answered valid. So unknown fields are dropped first, and the rest is
	// decoded strictly: a misspelt enum value is an error, never an answer
	// about another object.
	md := m.ProtoReflect().Descriptor()
	err := protojson.Unmarshal(data, m)
	if err == nil || !strings.Contains(err.Error(), "unknown field") {
		return boundDecodeError(err, md)
	}
	known, serr := dropUnknownFields(data, md)
	if serr != nil {
		return boundDecodeError(err, md)
	}
	proto.Reset(m)
	return boundDecodeError(protojson.Unmarshal(known, m), md)
}

// boundDecodeError is protojson's error about md in the API's words
// (decodeWords), with the input it quotes bounded (boundQuotes).
func boundDecodeError(err error, md protoreflect.MessageDescriptor) error {
	if err == nil {
		return nil
	}
	// protojson's "proto:" prefix (and the no-break space it puts after it
	// at random) says nothing to the caller.
	msg := strings.TrimLeft(strings.TrimPrefix(err.Error(), "proto:"), " \u00a0")
	return errors.New(decodeWords(boundQuotes(msg), md))
}

// decodeWords is protojson's error text about a message of md in the
// API's words: its fields by their proto (snake_case) names, which
// protojson gives by their JSON (lowerCamelCase) ones, and an enum field's
// refusal with the names the field takes ("invalid value for enum field
// kind: \"mutex\"" did not say KIND_MUTEX).
func decodeWords(text string, md protoreflect.MessageDescriptor) string {
	fields := md.Fields()
	for i := range fields.Len() {
		fd := fields.Get(i)
		if j := fd.JSONName(); j != string(fd.Name()) {
			text = strings.ReplaceAll(text, "field "+j+":", "field "+string(fd.Name())+":")
		}
		if ed := fd.Enum(); ed != nil && strings.Contains(text, "enum field "+string(fd.Name())+":") {
			var names []string
			for k := range ed.Values().Len() {
				if v := ed.Values().Get(k); v.Number() != 0 {
					names = append(names, string(v.Name()))
				}
			}
			text += fmt.Sprintf(" (%s takes %s)", fd.Name(), strings.Join(names, ", "))
		}
	}
	return text
}

// dropUnknownFields removes the keys of a JSON object (and of the objects
// of its message fields) that name no field of md, by JSON or proto name.
func dropUnknownFields(data []byte, md protoreflect.MessageDescriptor) ([]byte, error) {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(data, &obj); err != nil {
		return nil, err
	}
	for k, v := range obj {
		fd := md.Fields().ByJSONName(k)
		if fd == nil {
			fd = md.Fields().ByTextName(k)
		}
		switch {
		case fd == nil:
			delete(obj, k)
		case fd.Message() != nil && !fd.IsMap() && !fd.IsList() && len(v) > 0 && v[0] == '{':
			inner, err := dropUnknownFields(v, fd.Message())
			if err != nil {
				return nil, err
			}
			obj[k] = inner
		}
	}
	return json.Marshal(obj)
}

// restJSON is the transcoder's JSON codec, used for REST bodies in and out.
// Unlike the Connect codec it refuses unknown fields: a REST caller who
// misspells wait_timeout_ms learns it from a 400 instead of silently trying
// once.
func restJSON(res vanguard.TypeResolver) vanguard.Codec {
	out := jsonOut
	out.Resolver = res
	return restCodec{vanguard.JSONCodec{
		MarshalOptions:   out,
		UnmarshalOptions: protojson.UnmarshalOptions{Resolver: res, DiscardUnknown: false},
	}}
}

// restCodec makes a body that does not decode a 400 (vanguard reports a
// codec's plain error as a 500).
type restCodec struct{ vanguard.JSONCodec }

func (c restCodec) Unmarshal(data []byte, msg proto.Message) error {
	err := badBody(c.JSONCodec.Unmarshal(data, msg))
	if err == nil {
		return nil
	}
	text := decodeWords(err.Error(), msg.ProtoReflect().Descriptor())
	return connect.NewError(connect.CodeInvalidArgument, errors.New(strings.TrimPrefix(text, "invalid_argument: ")))
}

// UnmarshalField decodes a path variable or a query parameter. Its error
// names the field and what it takes: the JSON decoder's own ("invalid
// character 'a' looking for beginning of value") says neither.
func (c restCodec) UnmarshalField(data []byte, msg proto.Message, field protoreflect.FieldDescriptor) error {
	if err := c.JSONCodec.UnmarshalField(data, msg, field); err != nil {
		return connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("%s %s in the path or query is not %s", field.Name(), quote.Bounded(string(data)), kindWords(field)))
	}
	return nil
}

// kindWords says what a field takes, for an error message.
func kindWords(fd protoreflect.FieldDescriptor) string {
	switch fd.Kind() {
	case protoreflect.BoolKind:
		return "true or false"
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind, protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		return "a whole number of 0 or more"
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind, protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		return "a whole number"
	case protoreflect.EnumKind:
		return "one of the enum's names (see docs/api.md)"
	}
	return "valid " + fd.Kind().String()
}

func badBody(err error) error {
	if err == nil {
		return nil
	}
	// protojson writes "proto:" and a space it makes a no-break space at
	// random, so that no one matches its text: the caller reads ours.
	msg := strings.TrimPrefix(err.Error(), "proto:")
	msg = boundQuotes(strings.TrimLeft(msg, " \u00a0"))
	if strings.Contains(msg, "bytes field") {
		msg += ": a bytes field is base64 in JSON (\"aGVsbG8=\" for hello)"
	}
	return connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("the JSON body does not decode: %s (fields are the snake_case names of docs/api.md)", msg))
}
