package command

import "strings"

// splitLines splits body at each line ending Markdown recognises (\r\n, \r,
// \n). Line i of the result is line i+1 of the comment.
func splitLines(body string) []string {
	if strings.IndexByte(body, '\r') >= 0 {
		body = strings.ReplaceAll(body, "\r\n", "\n")
		body = strings.ReplaceAll(body, "\r", "\n")
	}
	return strings.Split(body, "\n")
}

// indentation is the column where line's content starts (a tab advances to
// the next multiple of 4, as in CommonMark) and the content from there.
func indentation(line string) (int, string) {
	col := 0
	for i := 0; i < len(line); i++ {
		switch line[i] {
		case ' ':
			col++
		case '\t':
			col += 4 - col%4
		default:
			return col, line[i:]
		}
	}
	return col, ""
}

// blocks tracks the Markdown around a line that decides whether the line is
// seen as text: fenced code and HTML comments (whose lines are never
// commands) and quotes (whose lines, and the lines lazily continuing them,
// are shown as quoted).
type blocks struct {
	fence   fence // the open fenced code block, if any
	comment bool  // inside an HTML block comment: <!-- at the start of a line
	inline  bool  // inside an HTML comment opened mid-paragraph
	qfence  fence // a fenced code block open inside a quote
	lazy    bool  // the last line was quoted paragraph text
}

// fence is an open fenced code block: its character and length.
type fence struct {
	char byte
	n    int // 0 when no fence is open
}

// text reports whether line is ordinary text a command can start on, and
// advances the state past it. It returns the line's content after its
// indentation.
//
// It follows CommonMark (and GitHub's rendering) closely enough for
// commands, and where it does not, it hides a line rather than show one: a
// fence opened deeper than 3 columns in a list item may swallow the rest of
// the comment, and a quote's paragraph interrupted by another block still
// counts as continuing.
func (b *blocks) text(line string) (string, bool) {
	indent, rest := indentation(line)
	blank := rest == ""
	switch {
	case b.fence.n > 0:
		if indent <= 3 && b.fence.closedBy(rest) {
			b.fence = fence{}
		}
		return "", false
	case b.comment:
		if i := strings.Index(line, "-->"); i >= 0 {
			b.comment = false
			b.inline = unclosedComment(line[i+3:])
		}
		return "", false
	case b.inline:
		// A paragraph, and so a comment inside one, ends at a blank line.
		if i := strings.Index(line, "-->"); i >= 0 && !blank {
			b.inline = unclosedComment(line[i+3:])
		} else if blank {
			b.inline = false
		}
		return "", false
	case blank:
		b.lazy, b.qfence = false, fence{}
		return "", false
	case indent > 3:
		return "", false // indented code, or a continuation of the paragraph above
	}
	if f, ok := opensFence(stripListMarkers(rest)); ok {
		b.fence, b.lazy, b.qfence = f, false, fence{}
		return "", false
	}
	if strings.HasPrefix(rest, "<!--") {
		b.comment = unclosedComment(rest)
		b.lazy, b.qfence = false, fence{}
		return "", false
	}
	if rest[0] == '>' {
		b.quoted(rest)
		return "", false
	}
	// Any other line ends a fence inside a quote (fences have no lazy
	// continuation) but continues a quoted paragraph.
	b.qfence = fence{}
	b.inline = unclosedComment(rest)
	if b.lazy {
		return "", false
	}
	return rest, true
}

// quoted advances the state past a line starting with '>'.
func (b *blocks) quoted(s string) {
	for {
		s = strings.TrimPrefix(s[1:], " ")
		indent, rest := indentation(s)
		if indent > 3 || rest == "" || rest[0] != '>' {
			s = rest
			if indent > 3 {
				s = "    " // indented code inside the quote
			}
			break
		}
		s = rest
	}
	switch {
	case b.qfence.n > 0:
		if b.qfence.closedBy(s) {
			b.qfence = fence{}
		}
		b.lazy = false
	case strings.TrimSpace(s) == "":
		b.lazy = false
	default:
		if f, ok := opensFence(stripListMarkers(s)); ok {
			b.qfence, b.lazy = f, false
			return
		}
		b.lazy = true
		b.inline = unclosedComment(s)
	}
}

// unclosedComment reports whether s opens an HTML comment it does not close.
func unclosedComment(s string) bool {
	i := strings.LastIndex(s, "<!--")
	return i >= 0 && !strings.Contains(s[i+4:], "-->")
}

// stripListMarkers removes leading list item markers ("- ", "* ", "+ ",
// "1. ", "2) "), so a fence opened inside a list item is seen as one: its
// lines are indented by only a few spaces and would otherwise look like text.
func stripListMarkers(s string) string {
	for {
		i := 0
		switch {
		case s != "" && (s[0] == '-' || s[0] == '*' || s[0] == '+'):
			i = 1
		default:
			for i < len(s) && i < 9 && s[i] >= '0' && s[i] <= '9' {
				i++
			}
			if i == 0 || i >= len(s) || (s[i] != '.' && s[i] != ')') {
				return s
			}
			i++
		}
		if i >= len(s) || (s[i] != ' ' && s[i] != '\t') {
			return s
		}
		s = strings.TrimLeft(s[i:], " \t")
	}
}

// opensFence reports whether s (a line without its indentation) opens a
// fenced code block, and which.
func opensFence(s string) (fence, bool) {
	if s == "" || (s[0] != '`' && s[0] != '~') {
		return fence{}, false
	}
	c := s[0]
	n := 0
	for n < len(s) && s[n] == c {
		n++
	}
	if n < 3 {
		return fence{}, false
	}
	// A backtick fence's info string cannot contain a backtick: "```x```"
	// is inline code, not a fence.
	if c == '`' && strings.IndexByte(s[n:], '`') >= 0 {
		return fence{}, false
	}
	return fence{c, n}, true
}

// closedBy reports whether s (a line without its indentation) closes f.
func (f fence) closedBy(s string) bool {
	i := 0
	for i < len(s) && s[i] == f.char {
		i++
	}
	return i >= f.n && strings.TrimLeft(s[i:], " \t") == ""
}
