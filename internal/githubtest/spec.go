package githubtest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
)

// SpecRelPath is where GitHub's REST description lives below the repository
// root once `npm ci` has installed @octokit/openapi.
const SpecRelPath = "node_modules/@octokit/openapi/generated/api.github.com.json"

// FindSpec looks for GitHub's REST description in node_modules in the working
// directory or one of its parents (tests run in their package's directory).
func FindSpec() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		p := filepath.Join(dir, filepath.FromSlash(SpecRelPath))
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("githubtest: %s not found in %s or any parent (run `npm ci` in the repository root)", SpecRelPath, dir)
		}
		dir = parent
	}
}

// spec is GitHub's REST description, cut down to the operations githubtest
// implements and parsed by kin-openapi. Parsing all of it (~13 MB, ~1,100
// operations) takes seconds, and far longer under -race; the schemas of the
// operations we serve are unchanged by the cut, so validation is the same.
type spec struct {
	doc     *openapi3.T
	load    time.Duration
	allOps  []opTemplate // every operation of the full description, to name unknown requests
	mu      sync.Mutex
	routers map[string]routers.Router // by path prefix ("" or "/api/v3")
}

type opTemplate struct {
	method, path, id string
	re               *regexp.Regexp
}

var specs = struct {
	mu sync.Mutex
	m  map[string]*specOnce
}{m: map[string]*specOnce{}}

type specOnce struct {
	once sync.Once
	s    *spec
	err  error
}

// loadSpec loads and prepares the description at path once per process.
func loadSpec(path string) (*spec, error) {
	specs.mu.Lock()
	e := specs.m[path]
	if e == nil {
		e = &specOnce{}
		specs.m[path] = e
	}
	specs.mu.Unlock()
	e.once.Do(func() { e.s, e.err = parseSpec(path) })
	return e.s, e.err
}

// SpecLoadTime reports how long loading the description at path took (zero
// if it has not been loaded in this process).
func SpecLoadTime(path string) time.Duration {
	specs.mu.Lock()
	e := specs.m[path]
	specs.mu.Unlock()
	if e == nil || e.s == nil {
		return 0
	}
	return e.s.load
}

func parseSpec(path string) (*spec, error) {
	start := time.Now()
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("githubtest: read REST description: %w", err)
	}
	var raw rawDoc
	if err := json.Unmarshal(data, &raw); err != nil {
		return nil, fmt.Errorf("githubtest: decode %s: %w", path, err)
	}
	keep := map[string]bool{}
	for _, r := range routeTable {
		keep[r.op] = true
	}
	pruned, all, err := prune(&raw, keep)
	if err != nil {
		return nil, err
	}
	b, err := json.Marshal(pruned)
	if err != nil {
		return nil, err
	}
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(b)
	if err != nil {
		return nil, fmt.Errorf("githubtest: parse REST description: %w", err)
	}
	return &spec{doc: doc, allOps: all, routers: map[string]routers.Router{}, load: time.Since(start)}, nil
}

// rawDoc is the description with everything below the second level left
// undecoded: decoding all of it into Go values is most of the cost, and only
// a few dozen operations and the schemas they use are needed.
type rawDoc struct {
	OpenAPI    json.RawMessage                       `json:"openapi"`
	Info       json.RawMessage                       `json:"info"`
	Paths      map[string]map[string]json.RawMessage `json:"paths"`
	Components map[string]map[string]json.RawMessage `json:"components"`
}

func decodeAny(b json.RawMessage) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	err := dec.Decode(&v)
	return v, err
}

var methods = []string{"get", "put", "post", "delete", "options", "head", "patch", "trace"}

// prune keeps the operations whose id is in keep and the components they
// reference, transitively. It also rewrites path templates whose parameters
// GitHub marks x-multi-segment (a file path, a ref like heads/main) so the
// router lets them span slashes: /contents/{path} becomes /contents/{path:.+}.
func prune(raw *rawDoc, keep map[string]bool) (map[string]any, []opTemplate, error) {
	if raw.Paths == nil || raw.Components == nil {
		return nil, nil, errors.New("githubtest: REST description has no paths or components")
	}
	var all []opTemplate
	outPaths := map[string]any{}
	found := map[string]bool{}
	component := func(kind, name string) (any, bool) {
		b, ok := raw.Components[kind][name]
		if !ok {
			return nil, false
		}
		v, err := decodeAny(b)
		return v, err == nil
	}
	for p, item := range raw.Paths {
		var kept map[string]any
		for _, m := range methods {
			opRaw, ok := item[m]
			if !ok {
				continue
			}
			var head struct {
				OperationID string `json:"operationId"`
			}
			if err := json.Unmarshal(opRaw, &head); err != nil {
				return nil, nil, fmt.Errorf("githubtest: %s %s: %w", m, p, err)
			}
			all = append(all, opTemplate{method: strings.ToUpper(m), path: p, id: head.OperationID})
			if !keep[head.OperationID] {
				continue
			}
			found[head.OperationID] = true
			op, err := decodeAny(opRaw)
			if err != nil {
				return nil, nil, err
			}
			if kept == nil {
				kept = map[string]any{}
				if params, ok := item["parameters"]; ok {
					if kept["parameters"], err = decodeAny(params); err != nil {
						return nil, nil, err
					}
				}
			}
			kept[m] = op
		}
		if kept == nil {
			continue
		}
		tmpl := p
		for _, name := range multiSegmentParams(kept, component) {
			tmpl = strings.Replace(tmpl, "{"+name+"}", "{"+name+":.+}", 1)
		}
		outPaths[tmpl] = kept
	}
	for id := range keep {
		if !found[id] {
			return nil, nil, fmt.Errorf("githubtest: operation %s is not in GitHub's REST description (renamed upstream?)", id)
		}
	}
	// Components referenced from the kept operations, transitively.
	need := map[string]map[string]bool{}
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			if ref, ok := v["$ref"].(string); ok && strings.HasPrefix(ref, "#/components/") {
				parts := strings.SplitN(strings.TrimPrefix(ref, "#/components/"), "/", 2)
				if len(parts) == 2 {
					kind, name := parts[0], unescapePointer(parts[1])
					if need[kind] == nil {
						need[kind] = map[string]bool{}
					}
					if !need[kind][name] {
						need[kind][name] = true
						if c, ok := component(kind, name); ok {
							walk(c)
						}
					}
				}
			}
			for _, x := range v {
				walk(x)
			}
		case []any:
			for _, x := range v {
				walk(x)
			}
		}
	}
	walk(outPaths)
	outComps := map[string]any{}
	for kind, names := range need {
		out := map[string]json.RawMessage{}
		for name := range names {
			if b, ok := raw.Components[kind][name]; ok {
				out[name] = b
			}
		}
		outComps[kind] = out
	}
	out := map[string]any{
		"openapi":    raw.OpenAPI,
		"info":       raw.Info,
		"paths":      outPaths,
		"components": outComps,
	}
	sort.Slice(all, func(i, j int) bool { return all[i].path < all[j].path })
	return out, all, nil
}

func unescapePointer(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "~1", "/"), "~0", "~")
}

// multiSegmentParams lists the path parameters of a path item marked
// x-multi-segment in any of its operations.
func multiSegmentParams(item map[string]any, component func(kind, name string) (any, bool)) []string {
	var names []string
	seen := map[string]bool{}
	add := func(params any) {
		list, _ := params.([]any)
		for _, p := range list {
			pm, _ := p.(map[string]any)
			if ref, ok := pm["$ref"].(string); ok {
				c, _ := component("parameters", strings.TrimPrefix(ref, "#/components/parameters/"))
				pm, _ = c.(map[string]any)
			}
			if pm == nil || pm["in"] != "path" || pm["x-multi-segment"] != true {
				continue
			}
			if n, _ := pm["name"].(string); n != "" && !seen[n] {
				seen[n] = true
				names = append(names, n)
			}
		}
	}
	add(item["parameters"])
	for _, m := range methods {
		if op, ok := item[m].(map[string]any); ok {
			add(op["parameters"])
		}
	}
	return names
}

// router returns a router matching API paths below prefix on any host. The
// servers entry is host-less so one router serves every test server (each
// listens on its own port) of this process.
func (s *spec) router(prefix string) (routers.Router, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r, ok := s.routers[prefix]; ok {
		return r, nil
	}
	doc := *s.doc // shallow: only Servers differs
	doc.Servers = openapi3.Servers{{URL: prefix + "/"}}
	r, err := gorillamux.NewRouter(&doc)
	if err != nil {
		return nil, fmt.Errorf("githubtest: build router: %w", err)
	}
	s.routers[prefix] = r
	return r, nil
}

// describe names the GitHub operation a request that githubtest does not
// implement would have been, for the error message.
func (s *spec) describe(method, path string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range s.allOps {
		o := &s.allOps[i]
		if o.method != method {
			continue
		}
		if o.re == nil {
			o.re = templateRegexp(o.path)
		}
		if o.re.MatchString(path) {
			return fmt.Sprintf("GitHub operation %s (%s %s), which githubtest does not implement", o.id, o.method, o.path)
		}
	}
	return "not an operation in GitHub's REST description"
}

var templateVar = regexp.MustCompile(`\\\{[^}]*\\\}`)

func templateRegexp(tmpl string) *regexp.Regexp {
	return regexp.MustCompile("^" + templateVar.ReplaceAllString(regexp.QuoteMeta(tmpl), `[^/]+`) + "$")
}

func validationOptions() *openapi3filter.Options {
	o := &openapi3filter.Options{
		AuthenticationFunc:  openapi3filter.NoopAuthenticationFunc,
		SkipSettingDefaults: true,
		MultiError:          true,
		SchemaValidationOptions: []openapi3.SchemaValidationOption{
			openapi3.WithStringFormatValidator("uri", openapi3.NewCallbackValidator(validURI)),
		},
	}
	o.WithCustomSchemaErrorFunc(func(e *openapi3.SchemaError) string {
		ptr := "/" + strings.Join(e.JSONPointer(), "/")
		return fmt.Sprintf("at %s: %s (got %s)", ptr, e.Reason, short(e.Value))
	})
	return o
}

// validURI checks format: uri. GitHub sends "" for unset URLs the
// description marks format: uri (a deployment status's target_url without a
// log_url, for one), so an empty string passes.
func validURI(s string) error {
	if s == "" {
		return nil
	}
	u, err := url.Parse(s)
	if err != nil {
		return err
	}
	if u.Scheme == "" {
		return fmt.Errorf("%q is not an absolute URI", s)
	}
	return nil
}

func short(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	if len(b) > 200 {
		return string(b[:200]) + "…"
	}
	return string(b)
}

// validateRequest checks a request against its operation. body is the
// request body already read; r.Body is replaced by a copy.
func validateRequest(ctx context.Context, route *routers.Route, params map[string]string, r *http.Request, body []byte) error {
	r2 := r.Clone(ctx)
	r2.Body = readCloser(body)
	in := &openapi3filter.RequestValidationInput{Request: r2, PathParams: params, Route: route, Options: validationOptions()}
	return openapi3filter.ValidateRequest(ctx, in)
}

func validateResponse(ctx context.Context, route *routers.Route, params map[string]string, r *http.Request, body []byte, status int, header http.Header, respBody []byte) error {
	r2 := r.Clone(ctx)
	r2.Body = readCloser(body)
	opts := validationOptions()
	in := &openapi3filter.RequestValidationInput{Request: r2, PathParams: params, Route: route, Options: opts}
	out := &openapi3filter.ResponseValidationInput{RequestValidationInput: in, Status: status, Header: header, Options: opts}
	out.SetBodyBytes(respBody)
	return openapi3filter.ValidateResponse(ctx, out)
}
