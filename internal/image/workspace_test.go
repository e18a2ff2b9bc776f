package image

import (
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/registry"

	"github.com/herokunix/herokunix/internal/artifact"
)

// A build that plants a symlink where its archive should be must not make
// the push container read what it points at.
func TestPushWorkspaceRefusesSymlinkedOutputs(t *testing.T) {
	for _, kind := range []artifact.Kind{artifact.KindDockerArchive, artifact.KindNix2Container} {
		ws := t.TempDir()
		if err := os.Symlink("/proc/self/environ", filepath.Join(ws, "web.out")); err != nil {
			t.Fatal(err)
		}
		po := artifact.ProcessOutput{Kind: kind, Archive: "web.out", Nix2ContainerJSON: "web.out"}
		if err := artifact.WriteManifest(ws, &artifact.Manifest{LockedFlake: "path:/x", Processes: map[string]artifact.ProcessOutput{"web": po}}); err != nil {
			t.Fatal(err)
		}
		reg := httptest.NewServer(registry.New())
		defer reg.Close()
		_, err := PushWorkspace(t.Context(), ws, strings.TrimPrefix(reg.URL, "http://"), "app", PushOptions{})
		if err == nil || !strings.Contains(err.Error(), "not a regular file") {
			t.Errorf("%s: got %v, want a refusal of the symlink", kind, err)
		}
	}
}

// A build ran user code: the push makes images only for the process types
// the build request named (none extra, none missing).
func TestPushWorkspaceRefusesProcessTypesTheRequestDidNotName(t *testing.T) {
	r := newTestRegistry(t)
	ws, _ := closureWorkspace(t, 1, map[int]string{})
	m, err := artifact.ReadManifest(ws)
	if err != nil {
		t.Fatal(err)
	}
	withRelease := t.TempDir()
	if err := os.Symlink(filepath.Join(ws, artifact.StoreRoot), filepath.Join(withRelease, artifact.StoreRoot)); err != nil {
		t.Fatal(err)
	}
	m.Processes["release"] = m.Processes["web"]
	if err := artifact.WriteManifest(withRelease, m); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, ws string
		want     []string
		wantErr  string
	}{
		{"an extra release", withRelease, []string{"web"}, `process type "release"`},
		{"a missing worker", ws, []string{"web", "worker"}, `lacks process type "worker"`},
		{"another type", ws, []string{"worker"}, `lacks process type "worker"`},
	} {
		_, err := PushWorkspace(t.Context(), tc.ws, r.host, "types-app", PushOptions{Processes: tc.want})
		if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
			t.Errorf("%s: error %v, want one containing %q", tc.name, err, tc.wantErr)
		}
	}
	if got := r.uploads(); len(got) != 0 {
		t.Errorf("refused pushes uploaded %q", got)
	}
	if _, err := PushWorkspace(t.Context(), ws, r.host, "types-app", PushOptions{Processes: []string{"web"}}); err != nil {
		t.Errorf("the request's own types were refused: %v", err)
	}
}
