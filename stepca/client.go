package stepca

import (
	"fmt"
	"io"
	"net/http"
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
	return resp, nil
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
