package main

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
	"text/template"
)

// parseForceTags parses the -tags value as one Go template over the
// container's inspect data, with the template functions gliderlabs
// registrator master offers there (bridge/bridge.go newService: strSlice,
// sIndex, mIndex, toUpper, toLower, replace, join, split, splitIndex,
// matchFirstElement, matchAllElements). httpGet and jsonParse are not
// offered (a network call in every mapping pass): a template using them is
// refused at start as an undefined function. A missing map key (a label
// the container lacks) prints "<no value>", text/template's default, as
// gliderlabs does. An empty value gives nil.
func parseForceTags(s string) (*template.Template, error) {
	if s == "" {
		return nil, nil
	}
	return template.New("-tags").Funcs(tagFuncs).Parse(s)
}

// tagFuncs are the -tags template functions, each as gliderlabs documents it.
var tagFuncs = template.FuncMap{
	"strSlice":          strSlice,
	"sIndex":            sIndex,
	"mIndex":            func(k string, m map[string]string) string { return m[k] },
	"toUpper":           strings.ToUpper,
	"toLower":           strings.ToLower,
	"replace":           func(n int, old, repl, s string) string { return strings.Replace(s, old, repl, n) },
	"join":              func(sep string, s []string) string { return strings.Join(s, sep) },
	"split":             func(sep, s string) []string { return strings.Split(s, sep) },
	"splitIndex":        func(i int, sep, s string) string { return sIndex(i, strings.Split(s, sep)) },
	"matchFirstElement": matchFirstElement,
	"matchAllElements":  matchAllElements,
}

// strSlice is s[from:] or s[from:to]; out-of-range bounds give s unchanged,
// and to < from gives s[from:].
func strSlice(s string, bounds ...int) string {
	switch len(bounds) {
	case 1:
		if b := bounds[0]; b >= 0 && b <= len(s) {
			return s[b:]
		}
	case 2:
		from, to := bounds[0], bounds[1]
		if from < 0 || to < 0 || from > len(s) || to > len(s) {
			return s
		}
		if to < from {
			return s[from:]
		}
		return s[from:to]
	}
	return s
}

// sIndex is s[i]; a negative i counts from the end (-1 is the last); an
// index past either end gives the element at that end; "" for an empty s.
func sIndex(i int, s []string) string {
	if len(s) == 0 {
		return ""
	}
	if i < 0 {
		i = -i
		if i >= len(s) {
			return s[0]
		}
		return s[len(s)-i]
	}
	if i >= len(s) {
		return s[len(s)-1]
	}
	return s[i]
}

func matchFirstElement(expr string, s []string) (string, error) {
	re, err := regexp.Compile(expr)
	if err != nil {
		return "", fmt.Errorf("matchFirstElement: %w", err)
	}
	for _, e := range s {
		if re.MatchString(e) {
			return e, nil
		}
	}
	return "", nil
}

func matchAllElements(expr string, s []string) ([]string, error) {
	re, err := regexp.Compile(expr)
	if err != nil {
		return nil, fmt.Errorf("matchAllElements: %w", err)
	}
	var out []string
	for _, e := range s {
		if re.MatchString(e) {
			out = append(out, e)
		}
	}
	return out, nil
}

// splitTags splits a tag list as gliderlabs master does (bridge/util.go
// recParseEscapedComma): on commas, except commas escaped as \, (which
// become plain commas in the tag); empty elements are dropped, spaces and
// duplicates are kept, and the elements come out in reverse order (its
// recursion appends the first element after the rest).
func splitTags(s string) []string {
	var out []string
	var cur strings.Builder
	flush := func() {
		if cur.Len() > 0 {
			out = append(out, cur.String())
		}
		cur.Reset()
	}
	for i := 0; i < len(s); i++ {
		switch {
		case s[i] == '\\' && i+1 < len(s) && s[i+1] == ',':
			cur.WriteByte(',')
			i++
		case s[i] == ',':
			flush()
		default:
			cur.WriteByte(s[i])
		}
	}
	flush()
	slices.Reverse(out)
	return out
}
