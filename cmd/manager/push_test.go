package main

import (
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/herokunix/herokunix/internal/artifact"
	"github.com/herokunix/herokunix/test/herokustub"
)

// A push the registry refuses with 401 writes a typed credentials failure
// to its termination message (and fails), so the controller can tell a bad
// key from a broken build; the message never holds the key.
func TestAPushTheRegistryRefusesReportsACredentialsFailure(t *testing.T) {
	const key = "push-test-key"
	stub := herokustub.New(herokustub.Options{APIKey: key})
	stub.CreateApp("acme-shop", "container")
	reg := httptest.NewServer(stub.RegistryHandler())
	t.Cleanup(func() { reg.Close(); stub.Close() })

	ws := t.TempDir()
	sp := "/nix/store/00000000000000000000000000000000-web"
	if err := artifact.WriteManifest(ws, &artifact.Manifest{LockedFlake: "path:/x", Processes: map[string]artifact.ProcessOutput{
		"web": {Kind: artifact.KindClosure, OutPath: sp, Closure: []artifact.StorePath{{Path: sp, NarSize: 1}}, Command: []string{"bin/web"}},
	}}); err != nil {
		t.Fatal(err)
	}
	for name, tc := range map[string]struct{ key, app string }{
		"wrong key":                   {"wrong-" + key, "acme-shop"},
		"an app the key cannot reach": {key, "someone-else"},
	} {
		t.Run(name, func(t *testing.T) {
			result := filepath.Join(t.TempDir(), "termination-log")
			t.Setenv("HEROKU_API_KEY", tc.key)
			err := runPush([]string{"--workspace", ws, "--app", tc.app, "--registry", strings.TrimPrefix(reg.URL, "http://"),
				"--insecure-registry", "--result", result})
			if err == nil {
				t.Fatal("the push succeeded")
			}
			msg, rerr := os.ReadFile(result)
			if rerr != nil {
				t.Fatalf("no termination message: %v", rerr)
			}
			f := artifact.ParseFailure(msg)
			if f == nil || f.Failure != artifact.FailureUnauthorized {
				t.Fatalf("termination message %q is not a credentials failure", msg)
			}
			if strings.Contains(string(msg), tc.key) {
				t.Errorf("the termination message holds the key: %s", msg)
			}
		})
	}
}

// Any other failure leaves the termination message to the log tail.
func TestAPushThatFailsOtherwiseWritesNoFailure(t *testing.T) {
	t.Setenv("HEROKU_API_KEY", "k")
	result := filepath.Join(t.TempDir(), "termination-log")
	err := runPush([]string{"--workspace", t.TempDir(), "--app", "acme-shop", "--registry", "127.0.0.1:1", "--insecure-registry", "--result", result})
	if err == nil {
		t.Fatal("a push of an empty workspace succeeded")
	}
	if _, serr := os.Stat(result); !os.IsNotExist(serr) {
		t.Errorf("a termination message was written: %v", serr)
	}
}
