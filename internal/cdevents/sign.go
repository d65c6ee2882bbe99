package cdevents

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strings"
)

// SignatureHeader carries "sha256=" and the hex HMAC-SHA256 of the body
// under EVENTS_SECRET, the way GitHub signs its own deliveries (but never
// with WEBHOOK_SECRET: a receiver must not be able to forge GitHub).
const SignatureHeader = "X-Shipbot-Signature-256"

const signaturePrefix = "sha256="

// Sign returns the SignatureHeader value for body.
func Sign(secret string, body []byte) string {
	return signaturePrefix + hex.EncodeToString(mac(secret, body))
}

// Verify checks a SignatureHeader value against body, in constant time. It is
// what a receiver written in Go does; the tests use it as the receiver.
func Verify(secret string, body []byte, header string) error {
	if header == "" {
		return errors.New("the delivery has no " + SignatureHeader + " header; set EVENTS_SECRET on the bot so that it signs its events")
	}
	hexsum, ok := strings.CutPrefix(header, signaturePrefix)
	sum, err := hex.DecodeString(hexsum)
	if !ok || err != nil || len(sum) != sha256.Size {
		return errors.New("the " + SignatureHeader + " header is not sha256= and 64 hex digits; it was not written by shipbot")
	}
	if !hmac.Equal(sum, mac(secret, body)) {
		return errors.New("the " + SignatureHeader + " header does not match the body; check that the receiver uses the bot's EVENTS_SECRET")
	}
	return nil
}

func mac(secret string, body []byte) []byte {
	h := hmac.New(sha256.New, []byte(secret))
	h.Write(body)
	return h.Sum(nil)
}
