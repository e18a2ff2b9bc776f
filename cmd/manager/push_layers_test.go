package main

import (
	"strings"
	"testing"
)

// A layer budget outside 1..40 is refused before anything is read or pushed
// (the CRD refuses it first; this guards other callers of the push).
func TestPushRefusesALayerBudgetOverTheCeiling(t *testing.T) {
	for _, n := range []string{"0", "41"} {
		err := runPush([]string{"--max-layers", n, "--app", "x", "--workspace", t.TempDir()})
		if err == nil || !strings.Contains(err.Error(), "--max-layers "+n) {
			t.Errorf("--max-layers %s: %v, want a refusal", n, err)
		}
	}
}

// A malformed --reuse-from is refused before anything is read or pushed.
func TestAMalformedReuseFromIsRefused(t *testing.T) {
	t.Setenv("HEROKU_API_KEY", "k")
	err := runPush([]string{"--reuse-from", "web=latest", "--app", "x", "--workspace", t.TempDir()})
	if err == nil || !strings.Contains(err.Error(), "--reuse-from") {
		t.Errorf("--reuse-from web=latest: %v, want a refusal", err)
	}
}
