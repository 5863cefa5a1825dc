package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"text/template"
	"time"

	"github.com/buger/jsonparser"
)

// parseForceTags parses the -tags value as one Go template over the
// container's inspect data, with the template functions gliderlabs
// registrator master offers there (bridge/bridge.go newService: strSlice,
// sIndex, mIndex, toUpper, toLower, replace, join, split, splitIndex,
// matchFirstElement, matchAllElements, httpGet, jsonParse). A missing map
// key (a label the container lacks) prints "<no value>", text/template's
// default, as gliderlabs does. An empty value gives nil. log receives
// httpGet's and jsonParse's errors (nil: discarded).
func parseForceTags(s string, log *slog.Logger) (*template.Template, error) {
	if s == "" {
		return nil, nil
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return template.New("-tags").Funcs(tagFuncs(log)).Parse(s)
}

// tagHTTPTimeout bounds one httpGet, request and body, as gliderlabs
// master's http.Client (bridge/bridge.go newService: 10 s).
const tagHTTPTimeout = 10 * time.Second

// tagFuncs are the -tags template functions, each as gliderlabs documents it.
func tagFuncs(log *slog.Logger) template.FuncMap {
	client := &http.Client{Timeout: tagHTTPTimeout}
	return template.FuncMap{
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
		"httpGet":           func(rawURL string) []byte { return httpGet(client, log, rawURL) },
		"jsonParse":         func(b []byte, path string) string { return jsonParse(log, b, path) },
	}
}

// httpGet is the body of a GET of rawURL, whatever its status, as gliderlabs
// master's httpGet: a request or read that fails is logged and gives an
// empty body, so the template goes on. The URL's query may carry secrets:
// only its scheme and host are logged.
func httpGet(client *http.Client, log *slog.Logger, rawURL string) []byte {
	res, err := client.Get(rawURL)
	if err != nil {
		log.Warn("-tags httpGet failed; it gives an empty body", "err", redactURLError(err))
		return []byte{}
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		log.Warn("-tags httpGet: reading the body failed; it gives an empty body", "host", res.Request.URL.Host, "err", err)
		return []byte{}
	}
	return body
}

// redactURLError drops the URL from a client error (it may carry a token in
// its query), keeping the host and the cause.
func redactURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		if u, perr := url.Parse(ue.URL); perr == nil {
			return fmt.Errorf("%s %s://%s: %w", ue.Op, u.Scheme, u.Host, ue.Err)
		}
		return fmt.Errorf("%s: %w", ue.Op, ue.Err)
	}
	return err
}

// jsonParse is the value at path in the JSON document b, the path's keys
// separated by "::", as gliderlabs master's jsonParse (the same library,
// buger/jsonparser, so the same text: a string without its quotes and
// escapes left as written, an object or array as its JSON). A path that is
// not there, or a document that is not JSON, is logged and gives "".
func jsonParse(log *slog.Logger, b []byte, path string) string {
	v, _, _, err := jsonparser.Get(b, strings.Split(path, "::")...)
	if err != nil {
		log.Warn("-tags jsonParse: no value; it gives \"\"", "path", path, "err", err)
		return ""
	}
	return string(v)
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
