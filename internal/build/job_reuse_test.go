package build

import (
	"slices"
	"strings"
	"testing"
	"time"

	herokunixv1 "github.com/herokunix/herokunix/api/v1alpha1"
	"github.com/herokunix/herokunix/internal/artifact"
)

// The push reuses layers only from the images herokunix pushed last, as
// status.images pins them (issue 11 item 1): the build hands their digests
// to the push container, and they do not rename the build.
func TestTheImagesOnStatusArePinnedForThePushToReuse(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	images := JobImages{Tools: "tools:1", Nix: "nix:1", RegistryHost: "registry.heroku.com"}
	pushArgs := func(app *herokunixv1.HerokuNixApp) []string {
		t.Helper()
		job, err := DesiredJob(app, DesiredFor(app, now, false), images)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range job.Spec.Template.Spec.Containers {
			if c.Name == containerPush {
				return c.Args
			}
		}
		t.Fatal("no push container")
		return nil
	}

	first := testApp()
	if args := pushArgs(first); slices.Contains(args, "--reuse-from") {
		t.Errorf("a first build pins images: %q", args)
	}

	pushed := testApp()
	web, worker := "sha256:"+strings.Repeat("a", 64), "sha256:"+strings.Repeat("b", 64)
	pushed.Status.Images = map[string]herokunixv1.ImageStatus{
		"web":    {ImageID: "sha256:" + strings.Repeat("c", 64), Digest: web},
		"worker": {ImageID: "sha256:" + strings.Repeat("d", 64), Digest: worker},
	}
	args := pushArgs(pushed)
	i := slices.Index(args, "--reuse-from")
	if i < 0 || i+1 == len(args) {
		t.Fatalf("push args %q pin nothing", args)
	}
	got, err := artifact.ParseReuseFrom(args[i+1])
	if err != nil || len(got) != 2 || got["web"] != web || got["worker"] != worker {
		t.Errorf("--reuse-from %q reads as %v (%v), want the manifest digests on status", args[i+1], got, err)
	}
	if a, b := DesiredFor(first, now, false).Name, DesiredFor(pushed, now, false).Name; a != b {
		t.Errorf("pinned images renamed the build: %s, %s", a, b)
	}
}
