package ec2_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	awssdk "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/smithy-go"

	"github.com/shipbot/shipbot/internal/driver/aws/ec2"
)

// answer is one canned HTTP answer of fakeEC2.
type answer struct {
	status int
	body   string
	hangUp bool // close the connection without answering
}

const okTags = `<CreateTagsResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/"><requestId>r1</requestId><return>true</return></CreateTagsResponse>`

func errorBody(code, msg string) string {
	return `<?xml version="1.0" encoding="UTF-8"?>
<Response><Errors><Error><Code>` + code + `</Code><Message>` + msg + `</Message></Error></Errors><RequestID>req-1</RequestID></Response>`
}

// fakeEC2 answers requests with answers in turn (the last one for ever)
// and keeps each request it got, with its form parsed.
type fakeEC2 struct {
	srv      *httptest.Server
	mu       sync.Mutex
	answers  []answer
	requests []*http.Request
	forms    []url.Values
}

func newFakeEC2(t *testing.T, answers ...answer) *fakeEC2 {
	f := &fakeEC2{answers: answers}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		form, _ := url.ParseQuery(string(body))
		f.mu.Lock()
		n := len(f.requests)
		f.requests = append(f.requests, r)
		f.forms = append(f.forms, form)
		a := f.answers[min(n, len(f.answers)-1)]
		f.mu.Unlock()
		if a.hangUp {
			conn, _, err := w.(http.Hijacker).Hijack()
			if err == nil {
				conn.Close()
			}
			return
		}
		w.Header().Set("Content-Type", "text/xml;charset=UTF-8")
		w.WriteHeader(a.status)
		io.WriteString(w, a.body)
	}))
	t.Cleanup(f.srv.Close)
	return f
}

// sent is the requests so far and their forms.
func (f *fakeEC2) sent() ([]*http.Request, []url.Values) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.requests), slices.Clone(f.forms)
}

func (f *fakeEC2) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.requests)
}

// client is a client of the fake whose retries do not wait.
func (f *fakeEC2) client(attempts int) *ec2.Client {
	cfg := awssdk.Config{
		Region:       "eu-west-1",
		Credentials:  credentials.NewStaticCredentialsProvider("AKIDTEST", "secret", "session"),
		BaseEndpoint: awssdk.String(f.srv.URL),
		Retryer: func() awssdk.Retryer {
			return retry.NewStandard(func(o *retry.StandardOptions) {
				o.Backoff = retry.BackoffDelayerFunc(func(int, error) (time.Duration, error) { return time.Millisecond, nil })
			})
		},
	}
	return ec2.New(cfg, ec2.Options{RetryMaxAttempts: attempts})
}

func createTags(c *ec2.Client) error {
	return c.CreateTags(context.Background(), &ec2.CreateTagsInput{Resources: []string{"i-1"}, Tags: map[string]string{"k": "v"}})
}

func TestRetries(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		answers  []answer
		attempts int
		sent     int
		code     string // of the error; "" for success
	}{
		{"throttled then ok", []answer{{503, errorBody("RequestLimitExceeded", "Request limit exceeded."), false}, {200, okTags, false}}, 5, 2, ""},
		{"throttle code on a 400", []answer{{400, errorBody("Throttling", "Rate exceeded"), false}, {200, okTags, false}}, 5, 2, ""},
		{"5xx then ok", []answer{{500, errorBody("InternalError", "An internal error has occurred"), false}, {200, okTags, false}}, 5, 2, ""},
		{"5xx without an EC2 body", []answer{{502, "<html>bad gateway</html>", false}, {200, okTags, false}}, 5, 2, ""},
		{"connection closed then ok", []answer{{hangUp: true}, {200, okTags, false}}, 5, 2, ""},
		{"client error is not retried", []answer{{400, errorBody("InvalidInstanceID.NotFound", "The instance ID 'i-1' does not exist"), false}}, 5, 1, "InvalidInstanceID.NotFound"},
		{"auth failure is not retried", []answer{{401, errorBody("AuthFailure", "AWS was not able to validate the provided access credentials"), false}}, 5, 1, "AuthFailure"},
		{"gives up after max attempts", []answer{{503, errorBody("Unavailable", "The server is overloaded"), false}}, 3, 3, "Unavailable"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFakeEC2(t, tc.answers...)
			err := createTags(f.client(tc.attempts))
			if n := f.count(); n != tc.sent {
				t.Errorf("sent %d times, want %d (err %v)", n, tc.sent, err)
			}
			if tc.code == "" {
				if err != nil {
					t.Fatalf("err = %v, want success", err)
				}
				return
			}
			var ae smithy.APIError
			if !errors.As(err, &ae) || ae.ErrorCode() != tc.code {
				t.Fatalf("err = %v, want an APIError %s", err, tc.code)
			}
			if tc.sent > 1 {
				var max *retry.MaxAttemptsError
				if !errors.As(err, &max) || max.Attempt != tc.sent {
					t.Errorf("err = %v, want a MaxAttemptsError after %d", err, tc.sent)
				}
			}
		})
	}
}

func TestRetryHonoursContext(t *testing.T) {
	t.Parallel()
	f := newFakeEC2(t, answer{503, errorBody("RequestLimitExceeded", "slow down"), false})
	cfg := awssdk.Config{Region: "eu-west-1", Credentials: credentials.NewStaticCredentialsProvider("a", "b", ""), BaseEndpoint: awssdk.String(f.srv.URL)}
	c := ec2.New(cfg, ec2.Options{RetryMaxAttempts: 100}) // the SDK's backoff: seconds
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := c.CreateTags(ctx, &ec2.CreateTagsInput{Resources: []string{"i-1"}, Tags: map[string]string{"k": "v"}})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("err = %v, want the context's deadline", err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("gave up after %s, want soon after the context's 300ms", took)
	}
}

func TestRequest(t *testing.T) {
	t.Parallel()
	f := newFakeEC2(t, answer{status: 200, body: okTags})
	c := f.client(1)
	err := c.DeleteTags(context.Background(), &ec2.DeleteTagsInput{Resources: []string{"i-1", "i-2"}, Keys: []string{"shipbot:release"}})
	if err != nil {
		t.Fatal(err)
	}
	requests, forms := f.sent()
	r, form := requests[0], forms[0]
	if r.Method != http.MethodPost || r.URL.Path != "/" || !strings.HasPrefix(r.Header.Get("Content-Type"), "application/x-www-form-urlencoded") {
		t.Errorf("request %s %s (%s), want a form POST to /", r.Method, r.URL.Path, r.Header.Get("Content-Type"))
	}
	want := url.Values{
		"Action": {"DeleteTags"}, "Version": {"2016-11-15"},
		"ResourceId.1": {"i-1"}, "ResourceId.2": {"i-2"}, "Tag.1.Key": {"shipbot:release"},
	}
	if form.Encode() != want.Encode() {
		t.Errorf("form = %s, want %s (no Tag.1.Value: that would delete only an empty value)", form.Encode(), want.Encode())
	}
	auth := r.Header.Get("Authorization")
	day := time.Now().UTC().Format("20060102")
	re := regexp.MustCompile(`^AWS4-HMAC-SHA256 Credential=AKIDTEST/(\d{8})/eu-west-1/ec2/aws4_request, SignedHeaders=([^,]+), Signature=[0-9a-f]{64}$`)
	m := re.FindStringSubmatch(auth)
	if m == nil || (m[1] != day && m[1] != time.Now().UTC().Add(-time.Minute).Format("20060102")) {
		t.Fatalf("Authorization = %q, want SigV4 for ec2 in eu-west-1 with the key AKIDTEST", auth)
	}
	for _, h := range []string{"host", "x-amz-date", "x-amz-security-token"} {
		if !strings.Contains(";"+m[2]+";", ";"+h+";") {
			t.Errorf("signed headers %q lack %s", m[2], h)
		}
	}
	if r.Header.Get("X-Amz-Security-Token") != "session" {
		t.Errorf("X-Amz-Security-Token = %q, want the session token", r.Header.Get("X-Amz-Security-Token"))
	}
}

// recordingHTTP answers every request with an empty CreateTags answer and
// remembers the URLs.
type recordingHTTP struct {
	mu   sync.Mutex
	urls []string
}

func (h *recordingHTTP) Do(r *http.Request) (*http.Response, error) {
	h.mu.Lock()
	h.urls = append(h.urls, r.URL.String())
	h.mu.Unlock()
	return &http.Response{StatusCode: 200, Body: io.NopCloser(strings.NewReader(okTags)), Header: http.Header{}}, nil
}

func TestEndpoint(t *testing.T) {
	// Not parallel: it sets the environment.
	for _, tc := range []struct {
		name string
		env  map[string]string
		cfg  awssdk.Config
		want string
	}{
		{"public endpoint of the region", nil, awssdk.Config{Region: "eu-west-1"}, "https://ec2.eu-west-1.amazonaws.com/"},
		{"china", nil, awssdk.Config{Region: "cn-north-1"}, "https://ec2.cn-north-1.amazonaws.com.cn/"},
		{"base endpoint", nil, awssdk.Config{Region: "eu-west-1", BaseEndpoint: awssdk.String("http://127.0.0.1:5000")}, "http://127.0.0.1:5000/"},
		{"AWS_ENDPOINT_URL", map[string]string{"AWS_ENDPOINT_URL": "http://127.0.0.1:5001"}, awssdk.Config{}, "http://127.0.0.1:5001/"},
		{"AWS_ENDPOINT_URL_EC2 wins", map[string]string{"AWS_ENDPOINT_URL": "http://127.0.0.1:5001", "AWS_ENDPOINT_URL_EC2": "http://127.0.0.1:5002"}, awssdk.Config{}, "http://127.0.0.1:5002/"},
		{"AWS_ENDPOINT_URL_EC2 alone", map[string]string{"AWS_ENDPOINT_URL_EC2": "http://127.0.0.1:5002"}, awssdk.Config{}, "http://127.0.0.1:5002/"},
		{"configured endpoints ignored", map[string]string{"AWS_ENDPOINT_URL_EC2": "http://127.0.0.1:5002", "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS": "true"}, awssdk.Config{}, "https://ec2.eu-west-1.amazonaws.com/"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, k := range []string{"AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_EC2", "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS"} {
				t.Setenv(k, "")
			}
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			cfg := tc.cfg
			if tc.env != nil {
				// The standard chain, as cmd/bot loads it.
				t.Setenv("AWS_REGION", "eu-west-1")
				t.Setenv("AWS_PROFILE", "")
				t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
				t.Setenv("AWS_CONFIG_FILE", filepath.Join(t.TempDir(), "none"))
				t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(t.TempDir(), "none"))
				var err error
				if cfg, err = config.LoadDefaultConfig(context.Background()); err != nil {
					t.Fatal(err)
				}
			}
			h := &recordingHTTP{}
			cfg.HTTPClient = h
			cfg.Credentials = credentials.NewStaticCredentialsProvider("a", "b", "")
			if err := createTags(ec2.New(cfg, ec2.Options{})); err != nil {
				t.Fatal(err)
			}
			if len(h.urls) != 1 || h.urls[0] != tc.want {
				t.Errorf("sent to %v, want %s", h.urls, tc.want)
			}
		})
	}
}

func TestNoRegion(t *testing.T) {
	t.Parallel()
	h := &recordingHTTP{}
	err := createTags(ec2.New(awssdk.Config{HTTPClient: h}, ec2.Options{}))
	if err == nil || !strings.Contains(err.Error(), "no region") || len(h.urls) != 0 {
		t.Errorf("err = %v after %d requests, want no request and an error naming the region", err, len(h.urls))
	}
}

// TestRunInstancesRetrySendsOneToken: a retried RunInstances carries the
// client token of its first attempt, so EC2 starts no second instance.
func TestRunInstancesRetrySendsOneToken(t *testing.T) {
	t.Parallel()
	ran := `<RunInstancesResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/"><requestId>r</requestId><reservationId>r-1</reservationId>
<instancesSet><item><instanceId>i-1</instanceId><instanceState><code>0</code><name>pending</name></instanceState>
<placement><availabilityZone>eu-west-1a</availabilityZone></placement><subnetId>subnet-1</subnetId>
<tagSet><item><key>app</key><value>web</value></item></tagSet></item></instancesSet></RunInstancesResponse>`
	f := newFakeEC2(t, answer{status: 503, body: errorBody("InternalError", "try again")}, answer{status: 200, body: ran})
	out, err := f.client(5).RunInstances(context.Background(), &ec2.RunInstancesInput{LaunchTemplateName: "web", Tags: map[string]string{"app": "web"}})
	if err != nil {
		t.Fatal(err)
	}
	want := ec2.Instance{ID: "i-1", State: ec2.StatePending, Zone: "eu-west-1a", SubnetID: "subnet-1", Tags: map[string]string{"app": "web"}}
	if len(out.Instances) != 1 || out.Instances[0].ID != want.ID || out.Instances[0].State != want.State || out.Instances[0].Zone != want.Zone ||
		out.Instances[0].SubnetID != want.SubnetID || out.Instances[0].Tags["app"] != "web" {
		t.Errorf("RunInstances = %+v, want [%+v]", out.Instances, want)
	}
	if f.count() != 2 {
		t.Fatalf("sent %d times, want 2", f.count())
	}
	_, forms := f.sent()
	first, second := forms[0], forms[1]
	if first.Get("ClientToken") == "" || first.Get("ClientToken") != second.Get("ClientToken") {
		t.Errorf("client tokens %q then %q, want one token, sent twice", first.Get("ClientToken"), second.Get("ClientToken"))
	}
	for k, v := range map[string]string{
		"LaunchTemplate.LaunchTemplateName": "web", "MinCount": "1", "MaxCount": "1",
		"TagSpecification.1.ResourceType": "instance", "TagSpecification.1.Tag.1.Key": "app", "TagSpecification.1.Tag.1.Value": "web",
	} {
		if first.Get(k) != v {
			t.Errorf("%s = %q, want %q", k, first.Get(k), v)
		}
	}
}
