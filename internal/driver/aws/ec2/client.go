// Package ec2 is shipbot's own client of the Amazon EC2 Query API: the
// handful of calls the aws driver makes (and a few its tests set moto up
// with), signed with SigV4 and retried by the SDK's standard retryer.
//
// It replaces the SDK's service/ec2, whose 700,000 generated lines took
// longer to compile than the rest of shipbot. It speaks the protocol
// directly: a form-encoded POST of Action, Version and the call's
// parameters (lists numbered from 1: InstanceId.1, Filter.1.Value.1), and
// an XML answer, or an XML error that becomes an *APIError (a
// smithy.APIError, as the SDK's errors are, so that callers classify both
// alike). Answers are decoded into small plain structs holding only what
// shipbot reads.
package ec2

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/smithy-go"
	"github.com/aws/smithy-go/logging"
	smithyhttp "github.com/aws/smithy-go/transport/http"
)

// apiVersion is the EC2 API version every request names.
const apiVersion = "2016-11-15"

// Client calls EC2 in one region. It is safe for concurrent use.
type Client struct {
	endpoint string // where requests go; "" when there is no region to send them to
	region   string
	creds    aws.CredentialsProvider // nil: requests go unsigned
	http     aws.HTTPClient
	signer   *v4.Signer
	retryer  aws.Retryer
	logger   logging.Logger // nil: retries are not logged
}

// Options adjusts a client made from an aws.Config.
type Options struct {
	// Region overrides the configuration's region.
	Region string
	// RetryMaxAttempts, when > 0, is how many times a call is sent at most
	// (the first attempt included); otherwise the retryer's own maximum.
	RetryMaxAttempts int
}

// New returns a client over cfg as the SDK's clients read it: its
// credentials, HTTP client, retryer, logger (with aws.LogRetries), and
// endpoint: AWS_ENDPOINT_URL_EC2 or the shared config's ec2 endpoint_url
// (cfg.ConfigSources), else cfg.BaseEndpoint (AWS_ENDPOINT_URL), else
// EC2's public endpoint of the region.
func New(cfg aws.Config, opts Options) *Client {
	region := cfg.Region
	if opts.Region != "" {
		region = opts.Region
	}
	c := &Client{
		endpoint: endpoint(cfg, region),
		region:   region,
		creds:    cfg.Credentials,
		http:     cfg.HTTPClient,
		signer:   v4.NewSigner(),
	}
	if _, cached := c.creds.(*aws.CredentialsCache); c.creds != nil && !cached {
		// As the SDK's clients do: roles and SSO are not asked per call.
		c.creds = aws.NewCredentialsCache(c.creds)
	}
	if c.http == nil {
		c.http = awshttp.NewBuildableClient()
	}
	if cfg.Retryer != nil {
		c.retryer = cfg.Retryer()
	} else {
		c.retryer = retry.NewStandard()
	}
	if opts.RetryMaxAttempts > 0 {
		c.retryer = retry.AddWithMaxAttempts(c.retryer, opts.RetryMaxAttempts)
	}
	if cfg.ClientLogMode.IsRetries() && cfg.Logger != nil {
		c.logger = cfg.Logger
	}
	return c
}

// endpoint is the URL requests to EC2 in region go to, by the SDK's rules
// for a client without FIPS or dual-stack endpoints: a configured EC2
// endpoint (unless only the general AWS_ENDPOINT_URL is set in the
// environment, which BaseEndpoint already holds), BaseEndpoint, or EC2's
// public endpoint.
func endpoint(cfg aws.Config, region string) string {
	base := aws.ToString(cfg.BaseEndpoint)
	_, general := os.LookupEnv("AWS_ENDPOINT_URL")
	_, specific := os.LookupEnv("AWS_ENDPOINT_URL_EC2")
	if !general || specific {
		if v, ok := configuredEndpoint(cfg.ConfigSources); ok {
			base = v
		}
	}
	if base != "" {
		if u, err := url.Parse(base); err == nil && u.Path == "" {
			u.Path = "/"
			return u.String()
		}
		return base
	}
	if region == "" {
		return ""
	}
	host := "ec2." + region + ".amazonaws.com"
	if strings.HasPrefix(region, "cn-") {
		host += ".cn"
	}
	return "https://" + host + "/"
}

// configuredEndpoint is EC2's endpoint in the configuration's sources
// (config.EnvConfig: AWS_ENDPOINT_URL_EC2; config.SharedConfig: a services
// section), unless they say to ignore configured endpoints.
func configuredEndpoint(sources []any) (string, bool) {
	ctx := context.Background()
	for _, s := range sources {
		if p, ok := s.(interface {
			GetIgnoreConfiguredEndpoints(context.Context) (bool, bool, error)
		}); ok {
			if ignore, found, err := p.GetIgnoreConfiguredEndpoints(ctx); err == nil && found && ignore {
				return "", false
			}
		}
	}
	for _, s := range sources {
		if p, ok := s.(interface {
			GetServiceBaseEndpoint(context.Context, string) (string, bool, error)
		}); ok {
			v, found, err := p.GetServiceBaseEndpoint(ctx, "EC2")
			if err != nil {
				return "", false
			}
			if found {
				return v, true
			}
		}
	}
	return "", false
}

// APIError is an error EC2 answered with. It is a smithy.APIError, like
// the SDK's errors, and tells the retryer its HTTP status.
type APIError struct {
	Code       string // e.g. "InvalidInstanceID.NotFound"
	Message    string
	RequestID  string
	StatusCode int
}

var _ smithy.APIError = (*APIError)(nil)

func (e *APIError) Error() string {
	return fmt.Sprintf("api error %s: %s (HTTP %d, request %s)", e.Code, e.Message, e.StatusCode, e.RequestID)
}

// ErrorCode is EC2's error code.
func (e *APIError) ErrorCode() string { return e.Code }

// ErrorMessage is EC2's message.
func (e *APIError) ErrorMessage() string { return e.Message }

// ErrorFault is unknown, as in the SDK's EC2 client, which modelled no
// EC2 error and so answered every one as a generic error of unknown fault:
// callers classify EC2 errors by their codes.
func (e *APIError) ErrorFault() smithy.ErrorFault { return smithy.FaultUnknown }

// HTTPStatusCode lets the retryer retry 5xx answers whatever their code.
func (e *APIError) HTTPStatusCode() int { return e.StatusCode }

// call sends one action with its parameters, retrying as the retryer
// says, and decodes the answer into out.
func (c *Client) call(ctx context.Context, action string, params url.Values, out any) error {
	if c.endpoint == "" {
		return fmt.Errorf("EC2 %s: no region to send it to: set AWS_REGION or the client's region", action)
	}
	params.Set("Action", action)
	params.Set("Version", apiVersion)
	body := params.Encode()

	releaseRetry := func(error) error { return nil }
	for attempt := 1; ; attempt++ {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("EC2 %s: %w", action, err)
		}
		releaseAttempt, err := c.attemptToken(ctx)
		if err != nil {
			return fmt.Errorf("EC2 %s: %w", action, err)
		}
		data, err := c.send(ctx, body)
		_ = releaseRetry(err)
		_ = releaseAttempt(err)
		if err == nil {
			if err := xml.Unmarshal(data, out); err != nil {
				return fmt.Errorf("EC2 %s: decode the answer: %w", action, err)
			}
			return nil
		}
		if ctx.Err() != nil || !c.retryer.IsErrorRetryable(err) {
			return fmt.Errorf("EC2 %s: %w", action, err)
		}
		if attempt >= c.retryer.MaxAttempts() {
			return fmt.Errorf("EC2 %s: %w", action, &retry.MaxAttemptsError{Attempt: attempt, Err: err})
		}
		release, tokenErr := c.retryer.GetRetryToken(ctx, err)
		if tokenErr != nil {
			return fmt.Errorf("EC2 %s: %w", action, errors.Join(err, tokenErr))
		}
		releaseRetry = release
		delay, delayErr := c.retryer.RetryDelay(attempt, err)
		if delayErr != nil {
			return fmt.Errorf("EC2 %s: %w", action, errors.Join(err, delayErr))
		}
		if c.logger != nil {
			c.logger.Logf(logging.Debug, "retrying EC2 %s in %s, attempt %d: %v", action, delay, attempt+1, err)
		}
		if waitErr := sleep(ctx, delay); waitErr != nil {
			return fmt.Errorf("EC2 %s: %w (waiting to retry after: %v)", action, waitErr, err)
		}
	}
}

// attemptToken is the retryer's leave to send an attempt (the adaptive
// retryer may make it wait).
func (c *Client) attemptToken(ctx context.Context) (func(error) error, error) {
	if r, ok := c.retryer.(aws.RetryerV2); ok {
		return r.GetAttemptToken(ctx)
	}
	return c.retryer.GetInitialToken(), nil
}

// send makes one attempt: it signs the request, sends it and returns the
// answer's body, or an *APIError, or a *smithyhttp.RequestSendError when
// no answer came (which the retryer retries).
func (c *Client) send(ctx context.Context, body string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.endpoint, strings.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")
	if err := c.sign(ctx, req, body); err != nil {
		return nil, err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, &smithyhttp.RequestSendError{Err: err}
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, &smithyhttp.RequestSendError{Err: fmt.Errorf("read the answer: %w", err)}
	}
	if resp.StatusCode < 200 || resp.StatusCode >= 300 {
		return nil, decodeError(resp.StatusCode, data)
	}
	return data, nil
}

// sign signs req with SigV4 for EC2 in the client's region, unless the
// client has no credentials (or anonymous ones), as the SDK does.
func (c *Client) sign(ctx context.Context, req *http.Request, body string) error {
	if c.creds == nil || aws.IsCredentialsProvider(c.creds, aws.AnonymousCredentials{}) {
		return nil
	}
	creds, err := c.creds.Retrieve(ctx)
	if err != nil {
		return fmt.Errorf("retrieve AWS credentials: %w", err)
	}
	sum := sha256.Sum256([]byte(body))
	return c.signer.SignHTTP(ctx, creds, req, hex.EncodeToString(sum[:]), "ec2", c.region, time.Now().UTC())
}

// decodeError reads EC2's error answer. An answer that is not one (a
// proxy's page) is an APIError of code UnknownError, as the SDK named it.
func decodeError(status int, data []byte) *APIError {
	var answer struct {
		Errors []struct {
			Code    string `xml:"Code"`
			Message string `xml:"Message"`
		} `xml:"Errors>Error"`
		RequestID string `xml:"RequestID"`
	}
	e := &APIError{Code: "UnknownError", Message: http.StatusText(status), StatusCode: status}
	if err := xml.Unmarshal(data, &answer); err == nil {
		e.RequestID = answer.RequestID
		if len(answer.Errors) > 0 {
			if answer.Errors[0].Code != "" {
				e.Code = answer.Errors[0].Code
			}
			if answer.Errors[0].Message != "" {
				e.Message = answer.Errors[0].Message
			}
		}
	}
	return e
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
