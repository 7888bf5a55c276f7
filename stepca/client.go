package stepca

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/smallstep/certificates/ca"
)

// maxAnswer is the most tacline reads of one step-ca answer: a signed
// certificate with its chain is a few kilobytes.
const maxAnswer = 1 << 20

// stationTimeout bounds one bootstrap or renewal request of a station.
const stationTimeout = 30 * time.Second

// newClient is a step-ca client that trusts root only, follows no
// redirect and reads at most maxAnswer bytes of an answer (guard).
func newClient(url, root string, timeout time.Duration) (*ca.Client, error) {
	return ca.NewClient(url, ca.WithRootFile(root), ca.WithTimeout(timeout), ca.WithTransportDecorator(guard))
}

// guard wraps a transport to step-ca: a redirect is not followed (step-ca
// never answers one; following it would send the one-time token, which
// lets anyone holding it have a certificate signed, to wherever the
// redirect points, in clear text for an http:// one), and an answer is
// cut with an error after maxAnswer bytes.
func guard(next http.RoundTripper) http.RoundTripper { return guarded{next} }

type guarded struct{ next http.RoundTripper }

// RedirectError is a redirect step-ca (or something in front of it)
// answered.
type RedirectError struct{ To string }

func (e *RedirectError) Error() string {
	return fmt.Sprintf("step-ca answered a redirect to %s; tacline follows none: set the URL to step-ca itself", e.To)
}

func (g guarded) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Response != nil { // a redirect the client is about to follow
		if req.Body != nil {
			req.Body.Close()
		}
		return nil, &RedirectError{To: req.URL.Redacted()}
	}
	resp, err := g.next.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	resp.Body = &limitedBody{ReadCloser: resp.Body, left: maxAnswer}
	if resp.StatusCode >= 400 {
		normalizeError(resp)
	}
	return resp, nil
}

// normalizeError makes an error answer carry its HTTP status the way
// step-ca's client reads it (JSON {"status", "message"}): an answer from
// something in front of step-ca (a proxy's 502 or 504 page, a JSON body
// without "status") was read as no answer at all, or as status 0, which
// counted as a refusal, so a 504 after step-ca had signed gave the intent
// up without revoking the serial.
func normalizeError(resp *http.Response) {
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	var e struct {
		Status  int    `json:"status"`
		Message string `json:"message"`
	}
	if err != nil || json.Unmarshal(body, &e) != nil || e.Message == "" {
		e.Message = strings.Join(strings.Fields(string(body)), " ")
		if len(e.Message) > 200 {
			e.Message = e.Message[:200] + "..."
		}
	}
	if e.Status != resp.StatusCode {
		e.Message = fmt.Sprintf("HTTP %d from %s (not step-ca's own answer?): %s", resp.StatusCode, resp.Request.URL.Host, e.Message)
	}
	e.Status = resp.StatusCode
	b, _ := json.Marshal(e)
	resp.Body = io.NopCloser(bytes.NewReader(b))
	resp.Header.Set("Content-Type", "application/json")
}

var errTooLarge = fmt.Errorf("step-ca's answer is larger than %d bytes; not read", maxAnswer)

// limitedBody fails a read past its limit (io.LimitReader would end the
// answer quietly, which a JSON decoder may take for a whole one).
type limitedBody struct {
	io.ReadCloser
	left int64
}

func (b *limitedBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		return 0, errTooLarge
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.ReadCloser.Read(p)
	b.left -= int64(n)
	return n, err
}
