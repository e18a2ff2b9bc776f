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
