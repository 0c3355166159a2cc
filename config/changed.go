package config

import (
	"reflect"
	"strings"
)

// Changed names, by their dotted keys (consensus.ride_along_ms), the
// settings outside security and log.level whose values differ between a
// and b: what a reload (SIGHUP), which puts only those in force, leaves
// for a restart. The keys come from the yaml tags; a map or a list is one key.
func Changed(a, b Config) []string {
	var out []string
	changed(reflect.ValueOf(a), reflect.ValueOf(b), "", &out)
	return out
}

func changed(a, b reflect.Value, prefix string, out *[]string) {
	if a.Kind() != reflect.Struct {
		if !reflect.DeepEqual(a.Interface(), b.Interface()) {
			*out = append(*out, prefix)
		}
		return
	}
	t := a.Type()
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "" || name == "-" {
			name = strings.ToLower(f.Name)
		}
		key := name
		if prefix != "" {
			key = prefix + "." + name
		}
		if key == "security" || key == "log.level" {
			continue // put in force by a reload
		}
		changed(a.Field(i), b.Field(i), key, out)
	}
}
