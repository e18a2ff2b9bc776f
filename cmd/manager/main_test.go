package main

import (
	"bytes"
	"context"
	"os"
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
	if _, err := exec.LookPath("nix"); err != nil && os.Getenv("HEROKUNIX_REQUIRE_NIX") == "" {
		t.Skip("nix is not installed; run hack/install-nix.sh (make test does)")
	}
	bin := filepath.Join(t.TempDir(), "manager")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("building the manager: %v\n%s", err, out)
	}
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
