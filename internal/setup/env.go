package setup

import (
	"bufio"
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// EnvVar is one variable for .env.
type EnvVar struct{ Key, Value string }

func envPath(dir string) string { return filepath.Join(dir, ".env") }

// WriteEnv sets vars in dir/.env, keeping every other line (variables,
// comments, blank lines) as it was, and returns the file's path. The file is
// replaced atomically and left readable by its owner only (0600): it holds
// the App's private key.
func WriteEnv(dir string, vars []EnvVar) (string, error) {
	path := envPath(dir)
	old, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return path, err
	}
	want := map[string]string{}
	for _, v := range vars {
		want[v.Key] = v.Value
	}
	written := map[string]bool{}
	var out bytes.Buffer
	for _, entry := range envEntries(old) {
		key := entryKey(entry)
		if _, ok := want[key]; ok {
			if !written[key] {
				out.WriteString(formatEnv(key, want[key]))
				out.WriteByte('\n')
				written[key] = true
			}
			continue // later duplicates of a key we set would override it
		}
		out.WriteString(entry)
		out.WriteByte('\n')
	}
	for _, v := range vars {
		if !written[v.Key] {
			out.WriteString(formatEnv(v.Key, v.Value))
			out.WriteByte('\n')
			written[v.Key] = true
		}
	}
	tmp, err := os.CreateTemp(dir, ".env.tmp-*")
	if err != nil {
		return path, err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return path, err
	}
	if _, err := tmp.Write(out.Bytes()); err != nil {
		tmp.Close()
		return path, err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return path, err
	}
	if err := tmp.Close(); err != nil {
		return path, err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return path, err
	}
	return path, os.Chmod(path, 0o600)
}

// envEntries splits a .env file into entries: one line each, except a
// double-quoted value left open, which runs on to its closing quote (files
// written by hand may hold a PEM that way).
func envEntries(b []byte) []string {
	var entries []string
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	var cur []string
	for sc.Scan() {
		line := strings.TrimSuffix(sc.Text(), "\r")
		if cur != nil {
			cur = append(cur, line)
			if closesQuote(line) {
				entries = append(entries, strings.Join(cur, "\n"))
				cur = nil
			}
			continue
		}
		if key := entryKey(line); key != "" {
			_, val, _ := strings.Cut(line, "=")
			val = strings.TrimSpace(val)
			if strings.HasPrefix(val, `"`) && !closesQuote(val[1:]) {
				cur = []string{line}
				continue
			}
		}
		entries = append(entries, line)
	}
	if cur != nil {
		entries = append(entries, strings.Join(cur, "\n"))
	}
	return entries
}

// closesQuote reports whether s holds an unescaped double quote.
func closesQuote(s string) bool {
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
		case '"':
			return true
		}
	}
	return false
}

// entryKey is the variable an entry sets ("" for comments and blanks).
func entryKey(entry string) string {
	line := strings.TrimSpace(entry)
	if line == "" || strings.HasPrefix(line, "#") {
		return ""
	}
	line = strings.TrimPrefix(line, "export ")
	key, _, ok := strings.Cut(line, "=")
	if !ok {
		return ""
	}
	return strings.TrimSpace(key)
}

// formatEnv writes KEY=value, quoting the value with \n, \" and \\ escapes
// when it holds anything a .env reader could take otherwise.
func formatEnv(key, value string) string {
	if value != "" && !strings.ContainsAny(value, "\n\r\"\\'#$ \t`=") {
		return key + "=" + value
	}
	var b strings.Builder
	b.WriteString(key)
	b.WriteString(`="`)
	for _, r := range value {
		switch r {
		case '\n':
			b.WriteString(`\n`)
		case '\r':
			b.WriteString(`\r`)
		case '"':
			b.WriteString(`\"`)
		case '\\':
			b.WriteString(`\\`)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}
