package main

import (
	"bytes"
	"context"
	"github.com/herokunix/herokunix/test/fixtures"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestLocalDefaultDeploysTheSample runs what `make run` runs on a machine
// with no cluster: the sample flake built with Nix, pushed, released on the
// Heroku stand-in, Ready, and its web image answering.
func TestLocalDefaultDeploysTheSample(t *testing.T) {
	fixtures.RequireNix(t)
	bin := managerBinary(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "--local=always")
	cmd.Dir = filepath.Join("..", "..")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("manager --local=always: %v\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
	}
	out := stdout.String()
	for _, want := range []string{
		"$ kubectl get herokunixapps",
		"Released",
		`GET / -> "hello from herokunix\n"`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}
