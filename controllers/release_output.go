package controllers

import (
	"context"
	"errors"
	"regexp"
	"strings"
	"unicode"
	"unicode/utf8"

	"sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/herokunix/herokunix/internal/heroku"
)

// Bounds of the release-phase output kept on status, the Released
// condition and the Warning event: the event's note may hold 1 KiB, and
// the condition's message says which release failed before the tail.
const (
	outputTailLines = 20
	outputTailBytes = 640
)

// readOutputTail reads the end of a failed release phase's output from
// its stream, once, when the failure is first seen (one GET that is not a
// Platform API call; see heroku.Client.ReleaseOutput). "" when the release
// has no stream, Heroku answers 404 for it (the release image has no
// curl), or it cannot be read: the failure is reported either way.
func (r *HerokuNixAppReconciler) readOutputTail(ctx context.Context, p *pass, streamURL string) string {
	if streamURL == "" {
		return ""
	}
	out, err := p.heroku.ReleaseOutput(ctx, streamURL)
	if err != nil {
		if !errors.Is(err, heroku.ErrNoOutput) {
			log.FromContext(ctx).Info("could not read the failed release phase's output", "error", err.Error())
		}
		return ""
	}
	return sanitizeOutputTail(out, p.apiKey)
}

var (
	// ansiEscape matches terminal escape sequences: CSI (colours, cursor
	// moves), OSC (titles, links) and the two-byte escapes.
	ansiEscape = regexp.MustCompile(`\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-Z\\-_]?`)
)

// sanitizeOutputTail keeps the last outputTailLines lines and at most
// outputTailBytes of a release command's output, as plain text fit for a
// condition and an event: escape sequences and control characters go (a
// carriage-return redraw keeps what was drawn last), invalid UTF-8 is
// replaced, and the API key, should the command have printed it, is
// redacted.
func sanitizeOutputTail(raw, apiKey string) string {
	redact := func(s string) string {
		if apiKey == "" {
			return s
		}
		return strings.ReplaceAll(s, apiKey, "<redacted>")
	}
	s := redact(strings.ToValidUTF8(raw, "\uFFFD"))
	s = ansiEscape.ReplaceAllString(s, "")
	var lines []string
	for _, line := range strings.Split(strings.ReplaceAll(s, "\r\n", "\n"), "\n") {
		if i := strings.LastIndexByte(strings.TrimRight(line, "\r"), '\r'); i >= 0 {
			line = line[i+1:]
		}
		line = strings.TrimRightFunc(strings.Map(printable, line), unicode.IsSpace)
		lines = append(lines, line)
	}
	for len(lines) > 0 && lines[len(lines)-1] == "" {
		lines = lines[:len(lines)-1]
	}
	lines = lines[max(0, len(lines)-outputTailLines):]
	out := redact(strings.Join(lines, "\n"))
	if len(out) > outputTailBytes {
		cut := len(out) - outputTailBytes + len("…")
		for cut < len(out) && !utf8.RuneStart(out[cut]) {
			cut++
		}
		out = "…" + out[cut:]
	}
	return out
}

// printable maps a tab to a space and drops every other control or
// format character (bidirectional overrides included).
func printable(r rune) rune {
	switch {
	case r == '\t':
		return ' '
	case unicode.IsControl(r), unicode.Is(unicode.Cf, r):
		return -1
	}
	return r
}
