package deploy

import (
	"bytes"
	"io"
	"sync"
)

// logWriter serialises writes to the deploy log. A log that cannot be
// written never fails a rollout, so it reports every write as done.
type logWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *logWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	_, _ = l.w.Write(p)
	return len(p), nil
}

// lineWriter prefixes every line one instance's install writes with its id,
// so that installs running side by side read apart on the deploy page.
type lineWriter struct {
	out    *logWriter
	prefix string
	mu     sync.Mutex
	buf    []byte
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	done := 0
	for {
		i := bytes.IndexByte(w.buf[done:], '\n')
		if i < 0 {
			break
		}
		w.emit(w.buf[done : done+i+1])
		done += i + 1
	}
	w.buf = w.buf[:copy(w.buf, w.buf[done:])]
	return len(p), nil
}

func (w *lineWriter) flush() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.buf) > 0 {
		w.emit(append(w.buf, '\n'))
		w.buf = w.buf[:0]
	}
}

func (w *lineWriter) emit(line []byte) {
	out := make([]byte, 0, len(w.prefix)+len(line))
	out = append(out, w.prefix...)
	w.out.Write(append(out, line...))
}
