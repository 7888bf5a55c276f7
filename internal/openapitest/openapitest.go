// Package openapitest checks HTTP exchanges against an OpenAPI document in
// tests, so that the document and the server cannot drift apart unnoticed.
//
// A Checker wraps a client's http.RoundTripper (Transport) or a server's
// http.Handler (Handler). For every exchange it checks, with kin-openapi's
// openapi3filter:
//
//   - the response: its status must be documented for the operation and its
//     body must match the documented schema for its Content-Type. Objects
//     must hold exactly the documented properties (the Checker closes every
//     object schema that does not say otherwise), so a field added, renamed
//     or mistyped on either side fails the test;
//   - the request: a request the document forbids must be refused (Refused,
//     by default any 4xx answer); a server that accepts it is a failure;
//   - a request for a path or method the document does not have must be
//     answered 404 or 405 with a body that matches the Problem schema, when
//     the document has one.
//
// It records every (operation, status) pair it saw, so a test can check
// that each documented response was exercised (Missing).
//
// The package promises: it never changes what the client or server sees
// (bodies are buffered and replayed as they were), and it reports every
// mismatch through the testing.TB it was given.
package openapitest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/legacy"
)

func init() {
	// Binary bodies (CRLs, OCSP) are checked for their Content-Type only.
	for _, ct := range []string{"application/pkix-crl", "application/ocsp-request", "application/ocsp-response"} {
		openapi3filter.RegisterBodyDecoder(ct, openapi3filter.FileBodyDecoder)
	}
}

// Checker checks exchanges against one document.
type Checker struct {
	name   string
	doc    *openapi3.T
	router routers.Router
	// Skip, when set, exempts requests the document is not about (for
	// example a simulator's own admin paths) from every check.
	Skip func(*http.Request) bool
	// Refused decides whether the response to operation op refuses a
	// request that the document forbids; nil: any 4xx status.
	Refused func(op string, status int, body []byte) bool
	// Corrupt, when set and true, says that the server is deliberately
	// sending malformed answers (an injected fault): responses are not
	// checked then.
	Corrupt func() bool

	mu   sync.Mutex
	seen map[Pair]int
}

// Pair is an operation ("POST /v1/provision", with the document's path
// template) and a response status.
type Pair struct {
	Operation string
	Status    int
}

func (p Pair) String() string { return p.Operation + " " + strconv.Itoa(p.Status) }

// New parses the document (name is used in messages) and validates it.
func New(name string, data []byte) (*Checker, error) {
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	closeObjects(doc)
	// Match paths on any host: tests listen on random loopback ports.
	routed := *doc
	routed.Servers = nil
	router, err := legacy.NewRouter(&routed)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return &Checker{name: name, doc: doc, router: router, seen: map[Pair]int{}}, nil
}

// MustNew is New for package-level checkers; it panics on a broken
// document.
func MustNew(name string, data []byte) *Checker {
	c, err := New(name, data)
	if err != nil {
		panic(err)
	}
	return c
}

// closeObjects sets additionalProperties: false on every object schema that
// lists properties and leaves additionalProperties unsaid.
func closeObjects(doc *openapi3.T) {
	no := false
	seen := map[*openapi3.Schema]bool{}
	var walk func(s *openapi3.SchemaRef)
	walk = func(s *openapi3.SchemaRef) {
		if s == nil || s.Value == nil || seen[s.Value] {
			return
		}
		v := s.Value
		seen[v] = true
		if len(v.Properties) > 0 && v.AdditionalProperties.Has == nil && v.AdditionalProperties.Schema == nil {
			v.AdditionalProperties.Has = &no
		}
		for _, p := range v.Properties {
			walk(p)
		}
		walk(v.Items)
		for _, l := range [][]*openapi3.SchemaRef{v.AllOf, v.AnyOf, v.OneOf} {
			for _, x := range l {
				walk(x)
			}
		}
	}
	for _, s := range doc.Components.Schemas {
		walk(s)
	}
	for _, item := range doc.Paths.Map() {
		for _, op := range item.Operations() {
			if op.RequestBody != nil && op.RequestBody.Value != nil {
				for _, mt := range op.RequestBody.Value.Content {
					walk(mt.Schema)
				}
			}
			for _, r := range op.Responses.Map() {
				if r.Value != nil {
					for _, mt := range r.Value.Content {
						walk(mt.Schema)
					}
				}
			}
		}
	}
}

// Operations lists every documented (operation, status) pair.
func (c *Checker) Operations() []Pair {
	var out []Pair
	for path, item := range c.doc.Paths.Map() {
		for method, op := range item.Operations() {
			for code := range op.Responses.Map() {
				n, err := strconv.Atoi(code)
				if err != nil {
					continue // "default" or a range: nothing to exercise
				}
				out = append(out, Pair{method + " " + path, n})
			}
		}
	}
	sortPairs(out)
	return out
}

// Seen lists the pairs checked so far.
func (c *Checker) Seen() []Pair {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []Pair
	for p := range c.seen {
		out = append(out, p)
	}
	sortPairs(out)
	return out
}

// Missing lists the documented pairs not seen so far.
func (c *Checker) Missing() []Pair {
	seen := c.Seen()
	var out []Pair
	for _, p := range c.Operations() {
		if !slices.Contains(seen, p) {
			out = append(out, p)
		}
	}
	return out
}

func sortPairs(ps []Pair) {
	sort.Slice(ps, func(i, j int) bool {
		if ps[i].Operation != ps[j].Operation {
			return ps[i].Operation < ps[j].Operation
		}
		return ps[i].Status < ps[j].Status
	})
}

// Transport returns a RoundTripper that sends through next (nil:
// http.DefaultTransport) and checks each exchange, reporting mismatches
// to t.
func (c *Checker) Transport(t testing.TB, next http.RoundTripper) http.RoundTripper {
	if next == nil {
		next = http.DefaultTransport
	}
	return &transport{c: c, t: t, next: next}
}

type transport struct {
	c    *Checker
	t    testing.TB
	next http.RoundTripper
}

// Unwrap returns the RoundTripper the exchanges go through.
func (tr *transport) Unwrap() http.RoundTripper { return tr.next }

func (tr *transport) RoundTrip(req *http.Request) (*http.Response, error) {
	if tr.c.Skip != nil && tr.c.Skip(req) {
		return tr.next.RoundTrip(req)
	}
	reqBody, err := drain(&req.Body)
	if err != nil {
		return nil, err
	}
	resp, err := tr.next.RoundTrip(req)
	if err != nil {
		return resp, err
	}
	respBody, err := drain(&resp.Body)
	if err != nil {
		return nil, err
	}
	if err := tr.c.Check(req, reqBody, resp.StatusCode, resp.Header, respBody); err != nil {
		tr.t.Errorf("%v", err)
	}
	return resp, nil
}

// drain reads *body and replaces it with a reader over the same bytes.
func drain(body *io.ReadCloser) ([]byte, error) {
	if *body == nil || *body == http.NoBody {
		return nil, nil
	}
	data, err := io.ReadAll(*body)
	(*body).Close()
	*body = io.NopCloser(bytes.NewReader(data))
	return data, err
}

// Handler returns a handler that serves with next and checks each
// exchange, reporting mismatches to t.
func (c *Checker) Handler(t testing.TB, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if c.Skip != nil && c.Skip(r) {
			next.ServeHTTP(w, r)
			return
		}
		reqBody, err := drain(&r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		rec := &recorder{ResponseWriter: w}
		next.ServeHTTP(rec, r)
		if rec.hijacked {
			return
		}
		if rec.status == 0 {
			rec.status = http.StatusOK
		}
		// The handler read the body already: give Check a fresh one.
		r.Body = io.NopCloser(bytes.NewReader(reqBody))
		if err := c.Check(r, reqBody, rec.status, w.Header(), rec.body.Bytes()); err != nil {
			t.Errorf("%v", err)
		}
	})
}

// recorder passes a response through and keeps a copy.
type recorder struct {
	http.ResponseWriter
	status   int
	body     bytes.Buffer
	hijacked bool
}

func (r *recorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	r.body.Write(b)
	return r.ResponseWriter.Write(b)
}

func (r *recorder) Flush() {
	if f, ok := r.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Hijack hands the connection over (a server dropping it mid-answer); the
// exchange is not checked then.
func (r *recorder) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	h, ok := r.ResponseWriter.(http.Hijacker)
	if !ok {
		return nil, nil, fmt.Errorf("openapitest: the response writer cannot be hijacked")
	}
	r.hijacked = true
	return h.Hijack()
}

// Check checks one exchange: req (its body already read into reqBody) was
// answered status with header and body. It records the pair and returns
// every mismatch, or nil.
func (c *Checker) Check(req *http.Request, reqBody []byte, status int, header http.Header, body []byte) error {
	ctx := context.Background()
	what := fmt.Sprintf("%s: %s %s answered %d", c.name, req.Method, req.URL.Path, status)
	// Route on the escaped path: a path parameter may hold an escaped "/".
	routed := req.Clone(ctx)
	routed.URL.Path, routed.URL.RawPath = req.URL.EscapedPath(), ""
	route, params, err := c.router.FindRoute(routed)
	if err != nil {
		// Not an operation of the document: only "no such route" may
		// answer it.
		if status != http.StatusNotFound && status != http.StatusMethodNotAllowed {
			return fmt.Errorf("%s, but the document has no such operation (%v)", what, err)
		}
		if problem := c.doc.Components.Schemas["Problem"]; problem != nil {
			if err := c.checkProblem(problem, header, body); err != nil {
				return fmt.Errorf("%s: %w", what, err)
			}
		}
		if err := problemStatus(status, header, body); err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		return nil
	}
	op := strings.ToUpper(route.Method) + " " + route.Path
	c.mu.Lock()
	c.seen[Pair{op, status}]++
	c.mu.Unlock()

	opts := &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc, MultiError: true, IncludeResponseStatus: true}
	in := &openapi3filter.RequestValidationInput{Request: req.Clone(ctx), PathParams: params, Route: route, Options: opts}
	in.Request.Body = io.NopCloser(bytes.NewReader(reqBody))
	var errs []string
	if rerr := openapi3filter.ValidateRequest(ctx, in); rerr != nil {
		refused := status >= 400 && status < 500
		if c.Refused != nil {
			refused = c.Refused(op, status, body)
		}
		if !refused {
			errs = append(errs, fmt.Sprintf("the request does not match the document, yet the server accepted it: %.1500v", rerr))
		}
	}
	if c.Corrupt == nil || !c.Corrupt() {
		out := &openapi3filter.ResponseValidationInput{RequestValidationInput: in, Status: status, Header: header, Options: opts}
		out.SetBodyBytes(body)
		if verr := openapi3filter.ValidateResponse(ctx, out); verr != nil {
			errs = append(errs, fmt.Sprintf("the response does not match the document: %.1500v\nbody: %.600s", verr, body))
		}
	}
	if err := problemStatus(status, header, body); err != nil {
		errs = append(errs, err.Error())
	}
	if len(errs) > 0 {
		return fmt.Errorf("%s (%s):\n%s", what, op, strings.Join(errs, "\n"))
	}
	return nil
}

// problemStatus holds a problem document's status member to the answer's
// HTTP status (RFC 9457 section 3.1.2: a generator must use the same
// status in the HTTP response), which a schema cannot say.
func problemStatus(status int, header http.Header, body []byte) error {
	if !strings.HasPrefix(header.Get("Content-Type"), "application/problem+json") {
		return nil
	}
	var p struct {
		Status *int `json:"status"`
	}
	if err := json.Unmarshal(body, &p); err != nil || p.Status == nil {
		return nil // the schema check reports a body that is not a problem
	}
	if *p.Status != status {
		return fmt.Errorf("the problem's status member is %d, the HTTP status %d", *p.Status, status)
	}
	return nil
}

// checkProblem checks a body against the Problem schema.
func (c *Checker) checkProblem(problem *openapi3.SchemaRef, header http.Header, body []byte) error {
	if ct := header.Get("Content-Type"); !strings.HasPrefix(ct, "application/problem+json") {
		return fmt.Errorf("Content-Type %q, want application/problem+json", ct)
	}
	v, err := openapi3filter.JSONBodyDecoder(bytes.NewReader(body), header, problem, nil)
	if err != nil {
		return fmt.Errorf("problem body: %w", err)
	}
	if err := problem.Value.VisitJSON(v, openapi3.MultiErrors()); err != nil {
		return fmt.Errorf("problem body does not match the Problem schema: %w", err)
	}
	return nil
}
