package main

// consul-template's helpers over lists and maps: grouping (byKey, byTag,
// byPort, byMeta), membership (in, contains*), merging and exploding keys
// into nested maps. As in helpers.go, each cites the consul-template
// function whose rule it follows.

import (
	"errors"
	"fmt"
	"reflect"
	"sort"
	"strconv"
	"strings"

	"dario.cat/mergo"
)

// byKey groups pairs by the first part of their key; the rest of the key
// becomes the pair's Key, and pairs with nothing left are dropped (funcs.go byKey).
func byKey(pairs []*KeyPair) (map[string]map[string]*KeyPair, error) {
	out := map[string]map[string]*KeyPair{}
	for _, p := range pairs {
		top, rest, _ := strings.Cut(p.Key, "/")
		if rest == "" {
			continue
		}
		if out[top] == nil {
			out[top] = map[string]*KeyPair{}
		}
		np := *p
		np.Key = rest
		out[top][rest] = &np
	}
	return out, nil
}

// byTag groups services (of service, connect or services) by tag (funcs.go byTag).
func byTag(in any) (map[string][]any, error) {
	out := map[string][]any{}
	switch l := in.(type) {
	case nil:
	case []*HealthService:
		groupByTags(out, l, func(s *HealthService) []string { return s.Tags })
	case []*CatalogSnippet:
		groupByTags(out, l, func(s *CatalogSnippet) []string { return s.Tags })
	default:
		return nil, fmt.Errorf("byTag: wrong argument type %T", in)
	}
	return out, nil
}

// groupByTags appends each of l to out under every one of its tags, in order.
func groupByTags[S any](out map[string][]any, l []S, tags func(S) []string) {
	for _, s := range l {
		for _, t := range tags(s) {
			out[t] = append(out[t], s)
		}
	}
}

// byPort groups service instances by port (funcs.go byPort).
func byPort(in any) (map[int][]any, error) {
	out := map[int][]any{}
	switch l := in.(type) {
	case nil:
	case []*HealthService:
		for _, s := range l {
			out[s.Port] = append(out[s.Port], s)
		}
	default:
		return nil, fmt.Errorf("byPort: wrong argument type %T", in)
	}
	return out, nil
}

// byMeta groups instances by the values of one or more service meta keys
// ("zone,version|int"): a missing key is _no_KEY_ (or 0 with |int, padded to
// five digits), characters outside [a-zA-Z0-9_-] become _, parts are joined
// with _ (funcs.go byMeta).
func byMeta(meta string, services []*HealthService) (map[string][]*HealthService, error) {
	keys := strings.Split(meta, ",")
	out := map[string][]*HealthService{}
	for _, s := range services {
		parts := make([]string, 0, len(keys))
		for _, k := range keys {
			name, isInt := strings.CutSuffix(k, "|int")
			v := s.ServiceMeta[name]
			switch {
			case v == "" && isInt:
				v = "0"
			case v == "":
				v = "_no_" + name + "_"
			}
			if isInt {
				n, err := strconv.Atoi(v)
				if err != nil {
					return nil, fmt.Errorf("byMeta: cannot parse %v as number: %w", v, err)
				}
				v = fmt.Sprintf("%05d", n)
			}
			parts = append(parts, metaKeyRe.ReplaceAllString(v, "_"))
		}
		k := strings.Join(parts, "_")
		out[k] = append(out[k], s)
	}
	return out, nil
}

// in reports whether v is an element of the list l (ints with ints, floats
// with floats, strings with strings of the same type) or a substring of the
// string l (funcs.go in). Anything else is false, never an error.
func in(l, v any) (bool, error) {
	lv, vv := reflect.ValueOf(l), reflect.ValueOf(v)
	switch lv.Kind() {
	case reflect.Array, reflect.Slice:
		for i := 0; i < lv.Len(); i++ {
			e := lv.Index(i)
			if e.Kind() == reflect.Interface {
				e = e.Elem()
			}
			switch e.Kind() {
			case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
				switch vv.Kind() {
				case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
					if vv.Int() == e.Int() {
						return true, nil
					}
				}
			case reflect.Float32, reflect.Float64:
				switch vv.Kind() {
				case reflect.Float32, reflect.Float64:
					if vv.Float() == e.Float() {
						return true, nil
					}
				}
			case reflect.String:
				if !vv.IsValid() {
					return false, errNilNeedle
				}
				if vv.Type() == e.Type() && vv.String() == e.String() {
					return true, nil
				}
			}
		}
	case reflect.String:
		if !vv.IsValid() {
			return false, errNilNeedle
		}
		if vv.Type() == lv.Type() && strings.Contains(lv.String(), vv.String()) {
			return true, nil
		}
	}
	return false, nil
}

// errNilNeedle: nil compared with a string is an error, as consul-template's
// in fails there (its reflect call on nil panics; text/template reports it).
var errNilNeedle = errors.New("cannot look for nil among strings")

// containsSome builds containsAll/Any/None/NotAll (funcs.go containsSomeFunc).
func containsSome(retTrue, invert bool) func([]any, any) (bool, error) {
	return func(v []any, l any) (bool, error) {
		for _, x := range v {
			if ok, _ := in(l, x); ok != invert {
				return !retTrue, nil
			}
		}
		return retTrue, nil
	}
}

// mergeMap merges src into dst with mergo.Map (dst's values win unless
// WithOverride; nested maps are merged) and returns dst (funcs.go mergeMap).
func mergeMap(dst, src map[string]any, opts ...func(*mergo.Config)) (map[string]any, error) {
	if err := mergo.Map(&dst, src, opts...); err != nil {
		return nil, err
	}
	return dst, nil
}

// explode turns pairs into nested maps split on "/"; a key that is both a
// value and a folder is an error (funcs.go explode, explodeHelper).
func explode(pairs []*KeyPair) (map[string]any, error) {
	m := map[string]any{}
	for _, p := range pairs {
		if err := explodeInto(m, p.Key, p.Value, p.Key); err != nil {
			return nil, fmt.Errorf("explode: %w", err)
		}
	}
	return m, nil
}

// explodeMap is explode for a flat map, taken in key order (funcs.go explodeMap).
func explodeMap(in map[string]any) (map[string]any, error) {
	keys := make([]string, 0, len(in))
	for k := range in {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	m := map[string]any{}
	for _, k := range keys {
		if err := explodeInto(m, k, in[k], k); err != nil {
			return nil, fmt.Errorf("explodeMap: %w", err)
		}
	}
	return m, nil
}

func explodeInto(m map[string]any, k string, v any, p string) error {
	top, rest, nested := strings.Cut(k, "/")
	if !nested {
		if k != "" {
			m[k] = v
		}
		return nil
	}
	if _, ok := m[top]; !ok {
		m[top] = map[string]any{}
	}
	next, ok := m[top].(map[string]any)
	if !ok {
		return fmt.Errorf("not a map: %q: %q already has value %q", p, top, m[top])
	}
	return explodeInto(next, rest, v, k)
}
