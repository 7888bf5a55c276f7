package openapitest

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
)

const doc = `openapi: 3.1.0
info: {title: t, version: "1"}
paths:
  /things/{id}:
    post:
      parameters:
        - {name: id, in: path, required: true, schema: {type: string}}
      requestBody:
        required: true
        content:
          application/json:
            schema:
              type: object
              additionalProperties: false
              required: [name]
              properties:
                name: {type: string}
      responses:
        "200":
          description: ok
          content:
            application/json:
              schema:
                type: object
                required: [id, count]
                properties:
                  id: {type: string}
                  count: {type: integer}
        "400":
          description: bad
          content:
            application/problem+json:
              schema: {$ref: "#/components/schemas/Problem"}
components:
  schemas:
    Problem:
      type: object
      required: [code]
      properties:
        code: {type: string}
        status: {type: integer}
`

// recorderTB collects what a Checker reports.
type recorderTB struct {
	testing.TB
	errs []string
}

func (r *recorderTB) Errorf(format string, args ...any) {
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}

// TestCheckerCatchesDrift: each way a server can drift from its document
// is reported, and a faithful exchange is not.
func TestCheckerCatchesDrift(t *testing.T) {
	tests := []struct {
		name    string
		path    string
		body    string
		status  int
		ct      string
		answer  string
		wantErr string // "" : no report
	}{
		{"faithful", "/things/a", `{"name":"x"}`, 200, "application/json", `{"id":"a","count":1}`, ""},
		{"field added", "/things/a", `{"name":"x"}`, 200, "application/json", `{"id":"a","count":1,"extra":true}`, "extra"},
		{"field renamed", "/things/a", `{"name":"x"}`, 200, "application/json", `{"ident":"a","count":1}`, "response does not match"},
		{"field mistyped", "/things/a", `{"name":"x"}`, 200, "application/json", `{"id":"a","count":"1"}`, "count"},
		{"status not documented", "/things/a", `{"name":"x"}`, 409, "application/problem+json", `{"code":"c"}`, "response does not match"},
		{"problem with wrong field", "/things/a", `{"nam":"x"}`, 400, "application/problem+json", `{"cod":"c"}`, "response does not match"},
		{"invalid request refused", "/things/a", `{"nam":"x"}`, 400, "application/problem+json", `{"code":"invalid_input"}`, ""},
		{"problem status as the answer's", "/things/a", `{"nam":"x"}`, 400, "application/problem+json", `{"code":"invalid_input","status":400}`, ""},
		{"problem status not the answer's", "/things/a", `{"nam":"x"}`, 400, "application/problem+json", `{"code":"invalid_input","status":409}`, "status member is 409"},
		{"unknown path 404 problem status 500", "/nope", ``, 404, "application/problem+json", `{"code":"not_found","status":500}`, "status member is 500"},
		{"invalid request accepted", "/things/a", `{"nam":"x"}`, 200, "application/json", `{"id":"a","count":1}`, "server accepted it"},
		{"unknown path 404 problem", "/nope", ``, 404, "application/problem+json", `{"code":"not_found"}`, ""},
		{"unknown path 404 plain", "/nope", ``, 404, "text/plain", `nope`, "application/problem+json"},
		{"unknown path answered", "/nope", ``, 200, "application/json", `{}`, "no such operation"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := New("doc", []byte(doc))
			if err != nil {
				t.Fatal(err)
			}
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				io.Copy(io.Discard, r.Body)
				w.Header().Set("Content-Type", tc.ct)
				w.WriteHeader(tc.status)
				io.WriteString(w, tc.answer)
			}))
			defer srv.Close()
			for _, side := range []string{"client", "server"} {
				rec := &recorderTB{TB: t}
				client, url := &http.Client{Transport: c.Transport(rec, nil)}, srv.URL
				if side == "server" {
					wrapped := httptest.NewServer(c.Handler(rec, srv.Config.Handler))
					defer wrapped.Close()
					client, url = wrapped.Client(), wrapped.URL
				}
				resp, err := client.Post(url+tc.path, "application/json", strings.NewReader(tc.body))
				if err != nil {
					t.Fatal(err)
				}
				got, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if string(got) != tc.answer || resp.StatusCode != tc.status {
					t.Errorf("%s: the caller got %d %q, want %d %q", side, resp.StatusCode, got, tc.status, tc.answer)
				}
				switch {
				case tc.wantErr == "" && len(rec.errs) > 0:
					t.Errorf("%s: unexpected report: %v", side, rec.errs)
				case tc.wantErr != "" && (len(rec.errs) != 1 || !strings.Contains(rec.errs[0], tc.wantErr)):
					t.Errorf("%s: reports %v, want one containing %q", side, rec.errs, tc.wantErr)
				}
			}
			if tc.path == "/things/a" && !slices.Contains(c.Seen(), Pair{"POST /things/{id}", tc.status}) {
				t.Errorf("seen %v, want POST /things/{id} %d", c.Seen(), tc.status)
			}
		})
	}
}

// TestMissing lists the documented responses not yet seen.
func TestMissing(t *testing.T) {
	c, err := New("doc", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	want := []Pair{{"POST /things/{id}", 200}, {"POST /things/{id}", 400}}
	if got := c.Missing(); !slices.Equal(got, want) {
		t.Fatalf("missing %v, want %v", got, want)
	}
	c.seen[Pair{"POST /things/{id}", 200}] = 1
	if got := c.Missing(); !slices.Equal(got, want[1:]) {
		t.Fatalf("missing %v, want %v", got, want[1:])
	}
}
