package main

import (
	"bytes"
	"context"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/herokunix/herokunix/test/fixtures/fixturestest"
)

// TestLocalDefaultDeploysTheSample runs what `make run` runs on a machine
// with no cluster: the production manager, against the local default, builds
// the sample flake with Nix, pushes and releases it on the Heroku stand-in,
// the sample goes Ready once the stand-in's web dyno (its image run locally
// with $PORT) is up, and that dyno answers.
func TestLocalDefaultDeploysTheSample(t *testing.T) {
	fixturestest.RequireNix(t)
	bin := filepath.Join(t.TempDir(), "local")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("building cmd/local: %v\n%s", err, out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "--local=always")
	cmd.Dir = filepath.Join("..", "..")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("local --local=always: %v\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
	}
	out := stdout.String()
	for _, want := range []string{
		"$ kubectl get herokunixapps",
		"Released",
		", serving (web.1 up)",
		`is up, serving: GET / -> "hello from herokunix\n"`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

func TestSplitArgs(t *testing.T) {
	for _, tc := range []struct {
		args        []string
		local       string
		keepRunning bool
		manager     []string
		err         bool
	}{
		{args: nil, local: "auto"},
		{args: []string{"--local=never", "--builder=local"}, local: "never", manager: []string{"--builder=local"}},
		{args: []string{"-builder", "local", "-local", "always", "--zap-log-level=debug"}, local: "always", manager: []string{"-builder", "local", "--zap-log-level=debug"}},
		{args: []string{"--keep-running", "--concurrency=2"}, local: "auto", keepRunning: true, manager: []string{"--concurrency=2"}},
		{args: []string{"-keep-running=false", "--local=always"}, local: "always"},
		{args: []string{"--", "--local=always"}, local: "auto", manager: []string{"--", "--local=always"}},
		{args: []string{"local", "--localhost"}, local: "auto", manager: []string{"local", "--localhost"}},
		{args: []string{"--local"}, err: true},
		{args: []string{"--local=sometimes"}, err: true},
		{args: []string{"--keep-running=maybe"}, err: true},
	} {
		f, manager, err := splitArgs(tc.args)
		if tc.err {
			if err == nil {
				t.Errorf("splitArgs(%q): no error", tc.args)
			}
			continue
		}
		if err != nil || f.local != tc.local || f.keepRunning != tc.keepRunning || !slices.Equal(manager, tc.manager) {
			t.Errorf("splitArgs(%q) = %+v, %q, %v; want local %q, keepRunning %v, manager %q",
				tc.args, f, manager, err, tc.local, tc.keepRunning, tc.manager)
		}
	}
}
