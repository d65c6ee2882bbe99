package secrets

import (
	"bytes"
	"testing"
)

func testKey(b byte) []byte { return bytes.Repeat([]byte{b}, KeyLen) }

func mustSealer(t *testing.T, key []byte) *sealer {
	t.Helper()
	s, err := newSealer(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

var prodDB = ID{Repo: "octo-org/web", Env: "production", Name: "DATABASE_URL"}

func TestSealRoundTrip(t *testing.T) {
	s := mustSealer(t, testKey(1))
	for _, v := range []string{"x", "postgres://u:p@db/web", "with\nnewlines\n", string(make([]byte, MaxValueLen))} {
		sealed := s.seal(prodDB, v)
		if len(v) >= 8 && bytes.Contains(sealed, []byte(v)) { // a short one may occur by chance
			t.Fatalf("sealed value contains the plaintext")
		}
		got, err := s.open(prodDB, sealed)
		if err != nil || got != v {
			t.Fatalf("open(seal(%.20q)) = %.20q, %v", v, got, err)
		}
	}
}

func TestSealFreshNonce(t *testing.T) {
	s := mustSealer(t, testKey(1))
	a, b := s.seal(prodDB, "same"), s.seal(prodDB, "same")
	if bytes.Equal(a, b) {
		t.Fatal("two seals of one value are equal: the nonce is not fresh")
	}
	if bytes.Equal(a[1:13], b[1:13]) {
		t.Fatal("two seals share a nonce")
	}
}

func TestSealWrongKey(t *testing.T) {
	sealed := mustSealer(t, testKey(1)).seal(prodDB, "v")
	if _, err := mustSealer(t, testKey(2)).open(prodDB, sealed); err != errUnsealable {
		t.Fatalf("open under another key: %v, want errUnsealable", err)
	}
}

func TestSealBindsID(t *testing.T) {
	s := mustSealer(t, testKey(1))
	sealed := s.seal(prodDB, "v")
	for _, other := range []ID{
		{Repo: "octo-org/api", Env: "production", Name: "DATABASE_URL"},
		{Repo: "octo-org/web", Env: "staging", Name: "DATABASE_URL"},
		{Repo: "octo-org/web", Env: "production", Name: "DATABASE_URL2"},
		// Parts must not run into each other.
		{Repo: "octo-org/webp", Env: "roduction", Name: "DATABASE_URL"},
	} {
		if _, err := s.open(other, sealed); err != errUnsealable {
			t.Errorf("value of %s opened as %s: %v", prodDB, other, err)
		}
	}
	// Repository and environment ignore case, as lookups do.
	if v, err := s.open(ID{Repo: "Octo-Org/Web", Env: "Production", Name: "DATABASE_URL"}, sealed); err != nil || v != "v" {
		t.Fatalf("open with other case: %q, %v", v, err)
	}
	if _, err := s.open(ID{Repo: "octo-org/web", Env: "production", Name: "database_url"}, sealed); err != errUnsealable {
		t.Fatalf("the name's case must count: %v", err)
	}
}

func TestSealTampered(t *testing.T) {
	s := mustSealer(t, testKey(1))
	sealed := s.seal(prodDB, "postgres://db")
	for i := range sealed {
		bad := bytes.Clone(sealed)
		bad[i] ^= 0x01
		if _, err := s.open(prodDB, bad); err != errUnsealable {
			t.Fatalf("flipping byte %d: %v, want errUnsealable", i, err)
		}
	}
	for _, bad := range [][]byte{nil, sealed[:1], sealed[:13], sealed[:len(sealed)-1], append(bytes.Clone(sealed), 0)} {
		if _, err := s.open(prodDB, bad); err != errUnsealable {
			t.Fatalf("%d of %d bytes: %v, want errUnsealable", len(bad), len(sealed), err)
		}
	}
}

func TestSealerKeyLength(t *testing.T) {
	for _, n := range []int{0, 16, 31, 33} {
		if _, err := newSealer(make([]byte, n)); err == nil {
			t.Fatalf("a %d-byte key was accepted", n)
		}
	}
}
