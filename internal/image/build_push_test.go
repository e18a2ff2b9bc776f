// End-to-end tests of the two halves of a build, as `manager build` and
// `manager push` (and the local builder) run them: nixbuild.Run with real
// Nix, then PushWorkspace to an in-process registry.
package image_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/herokunix/herokunix/internal/artifact"
	"github.com/herokunix/herokunix/internal/image"
	"github.com/herokunix/herokunix/internal/nixbuild"
	"github.com/herokunix/herokunix/test/dyno"
	"github.com/herokunix/herokunix/test/fixtures"
	"github.com/herokunix/herokunix/test/fixtures/fixturestest"
)

const (
	pkgs = "packages.x86_64-linux."
	app  = "shop"
	// process is the one process type every test builds.
	process = "web"
)

// nixOptions returns options for an offline build with the Nix on PATH,
// skipping the test when there is none unless HEROKUNIX_REQUIRE_NIX is set.
func nixOptions(t *testing.T) nixbuild.Nix {
	t.Helper()
	fixturestest.RequireNix(t)
	opts := nixbuild.Nix{Offline: true, Timeout: 10 * time.Minute}
	if testing.Verbose() {
		opts.Stderr = os.Stderr
	}
	return opts
}

// testRegistry is an in-process registry that counts blob upload requests,
// so a test can tell a push that sent layers from one that sent nothing.
type testRegistry struct {
	host string

	mu      sync.Mutex
	uploads []string // "METHOD path" of every blob upload request
}

var blobUpload = regexp.MustCompile(`^/v2/.+/blobs/uploads(/|$)`)

func newRegistry(t *testing.T) *testRegistry {
	t.Helper()
	r := &testRegistry{}
	reg := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		switch req.Method {
		case http.MethodPost, http.MethodPut, http.MethodPatch:
			if blobUpload.MatchString(req.URL.Path) {
				r.mu.Lock()
				r.uploads = append(r.uploads, req.Method+" "+req.URL.Path)
				r.mu.Unlock()
			}
		}
		reg.ServeHTTP(w, req)
	}))
	t.Cleanup(srv.Close)
	r.host = strings.TrimPrefix(srv.URL, "http://")
	return r
}

// takeUploads returns the upload requests since the last call.
func (r *testRegistry) takeUploads() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	u := r.uploads
	r.uploads = nil
	return u
}

func (r *testRegistry) ref(t *testing.T) name.Tag {
	t.Helper()
	tag, err := name.NewTag(fmt.Sprintf("%s/%s/%s:%s", r.host, app, process, image.Tag))
	if err != nil {
		t.Fatal(err)
	}
	return tag
}

// build runs nixbuild.Run of one process into a fresh workspace.
func build(t *testing.T, opts nixbuild.Nix, flake string, p artifact.BuildProcess) string {
	t.Helper()
	ws := t.TempDir()
	start := time.Now()
	if _, err := nixbuild.Run(t.Context(), opts, artifact.BuildRequest{
		Flake:     flake,
		Processes: map[string]artifact.BuildProcess{process: p},
	}, ws); err != nil {
		t.Fatalf("build: %v", err)
	}
	t.Logf("built %s in %v", p.Attribute, time.Since(start).Round(time.Millisecond))
	return ws
}

// push runs image.PushWorkspace of a workspace and returns the pushed image.
func push(t *testing.T, ws string, reg *testRegistry) artifact.Image {
	t.Helper()
	img, _ := pushCounted(t, ws, reg, image.PushOptions{})
	return img
}

// pushCounted is push with opts that also returns what the push says it
// sent.
func pushCounted(t *testing.T, ws string, reg *testRegistry, opts image.PushOptions) (artifact.Image, *artifact.Result) {
	t.Helper()
	start := time.Now()
	opts.TempDir = t.TempDir()
	res, err := image.PushWorkspace(t.Context(), ws, reg.host, app, opts)
	if err != nil {
		t.Fatalf("push: %v", err)
	}
	img, ok := res.Images[process]
	if !ok || len(res.Images) != 1 {
		t.Fatalf("push result %+v, want one image for %q", res, process)
	}
	t.Logf("pushed %s in %v (%d bytes, %d blobs present)", img.ImageID, time.Since(start).Round(time.Millisecond), res.PushedBytes, res.SkippedBlobs)
	return img, res
}

// pull fetches the image back and checks that it is one Heroku accepts.
func pull(t *testing.T, reg *testRegistry, want artifact.Image) v1.Image {
	t.Helper()
	img, err := remote.Image(reg.ref(t), remote.WithContext(t.Context()))
	if err != nil {
		t.Fatalf("pulling the pushed image: %v", err)
	}
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	if m.MediaType != types.DockerManifestSchema2 {
		t.Errorf("manifest media type = %q, want %q", m.MediaType, types.DockerManifestSchema2)
	}
	if m.Config.MediaType != types.DockerConfigJSON {
		t.Errorf("config media type = %q, want %q", m.Config.MediaType, types.DockerConfigJSON)
	}
	for i, l := range m.Layers {
		if l.MediaType != types.DockerLayer {
			t.Errorf("layer %d media type = %q, want %q", i, l.MediaType, types.DockerLayer)
		}
	}
	if len(m.Layers) == 0 {
		t.Error("the image has no layers")
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.OS != "linux" || cf.Architecture != "amd64" {
		t.Errorf("platform = %s/%s, want linux/amd64", cf.OS, cf.Architecture)
	}
	if got := m.Config.Digest.String(); got != want.ImageID {
		t.Errorf("registry has config %s, push reported image ID %s", got, want.ImageID)
	}
	if d, err := img.Digest(); err != nil || d.String() != want.Digest {
		t.Errorf("registry has manifest %s (%v), push reported %s", d, err, want.Digest)
	}
	return img
}

// serve runs the image as a dyno and checks that it answers like the
// fixture server.
func serve(t *testing.T, img v1.Image) {
	t.Helper()
	d, err := dyno.Start(t.Context(), img, t.TempDir(), nil)
	if err != nil {
		t.Fatalf("starting the image: %v", err)
	}
	t.Cleanup(func() {
		if err := d.Stop(); err != nil {
			t.Error(err)
		}
	})
	if err := d.WaitReady(t.Context()); err != nil {
		t.Fatal(err)
	}
	body, err := d.Get(t.Context(), "/")
	if err != nil || body != fixtures.ServerGreeting {
		t.Errorf("GET / = %q, %v; want %q\ndyno output:\n%s", body, err, fixtures.ServerGreeting, d.Output())
	}
}

// TestBuildPushAndRun takes each kind of flake output the whole way: a real
// Nix build, a push to a registry, the image pulled back and run as Heroku
// would run it. It then pushes the same build again, from the first image
// as the controller pins it, which must upload nothing; for the kinds
// herokunix layers itself, every layer is reused, which it is only if the
// push found each store path's content to match Nix's own narHash.
func TestBuildPushAndRun(t *testing.T) {
	opts := nixOptions(t)
	refs := map[string]string{}
	for _, tc := range []struct {
		name    string
		fixture string
		process artifact.BuildProcess
		reused  bool
	}{
		{"closure", fixtures.Closure, artifact.BuildProcess{Attribute: pkgs + "server", Command: []string{"bin/server"}}, true},
		{"docker-archive", fixtures.DockerArchive, artifact.BuildProcess{Attribute: pkgs + "image"}, false},
		{"gzipped docker-archive", fixtures.DockerArchive, artifact.BuildProcess{Attribute: pkgs + "gzipped"}, false},
		{"streamed docker-archive", fixtures.DockerArchive, artifact.BuildProcess{Attribute: pkgs + "stream"}, false},
		{"nix2container", fixtures.Nix2Container, artifact.BuildProcess{Attribute: pkgs + "image"}, true},
	} {
		if refs[tc.fixture] == "" {
			refs[tc.fixture] = fixturestest.Prepare(t, tc.fixture)
		}
		t.Run(tc.name, func(t *testing.T) {
			ws := build(t, opts, refs[tc.fixture], tc.process)
			reg := newRegistry(t)
			pushed, first := pushCounted(t, ws, reg, image.PushOptions{})
			t.Logf("first push: %d blob upload requests", len(reg.takeUploads()))
			if first.PushedBytes == 0 {
				t.Error("the first push reports no bytes uploaded")
			}

			pulled := pull(t, reg, pushed)
			serve(t, pulled)

			var progress bytes.Buffer
			again, second := pushCounted(t, ws, reg, image.PushOptions{Progress: &progress, ReuseFrom: map[string]string{process: pushed.Digest}})
			if layers, err := pulled.Layers(); err != nil {
				t.Fatal(err)
			} else if want := fmt.Sprintf("%d layers, %d reused", len(layers), len(layers)); tc.reused && !strings.Contains(progress.String(), want) {
				t.Errorf("second push: %q, want %q", progress.String(), want)
			}
			if second.PushedBytes != 0 {
				t.Errorf("second push reports %d bytes uploaded, want 0", second.PushedBytes)
			}
			if again != pushed {
				t.Errorf("second push gave %+v, first %+v", again, pushed)
			}
			if u := reg.takeUploads(); len(u) != 0 {
				t.Errorf("second push of an unchanged build made %d blob upload requests, want none:\n%s", len(u), strings.Join(u, "\n"))
			}
		})
	}
}

// reproChildEnv carries a reproChild to the re-executed test binary.
const reproChildEnv = "HEROKUNIX_TEST_REPRO_CHILD"

type reproChild struct {
	Flake    string `json:"flake"`
	Registry string `json:"registry"`
}

// reproLine prefixes the line on which the child reports its image ID.
const reproLine = "herokunix-repro-image-id: "

// TestClosureImageIsReproducibleAcrossProcesses builds and pushes the same
// closure in this process and in a second one, each to an empty registry,
// so that no layer can come from a previous image: the image IDs and layer
// digests must still be identical.
func TestClosureImageIsReproducibleAcrossProcesses(t *testing.T) {
	proc := artifact.BuildProcess{Attribute: pkgs + "server", Command: []string{"bin/server"}}
	if spec := os.Getenv(reproChildEnv); spec != "" {
		var c reproChild
		if err := json.Unmarshal([]byte(spec), &c); err != nil {
			t.Fatalf("%s: %v", reproChildEnv, err)
		}
		pushed := pushFrom(t, nixOptions(t), c.Flake, proc, c.Registry)
		fmt.Printf("\n%s%s\n", reproLine, pushed.ImageID)
		return
	}

	opts := nixOptions(t)
	flake := fixturestest.Prepare(t, fixtures.Closure)

	here := newRegistry(t)
	pushed := push(t, build(t, opts, flake, proc), here)
	layersHere := layerDigests(t, here)

	there := newRegistry(t)
	spec, err := json.Marshal(reproChild{Flake: flake, Registry: there.host})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run=^"+t.Name()+"$", "-test.count=1")
	cmd.Env = append(os.Environ(), reproChildEnv+"="+string(spec))
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("the second process failed: %v\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
	}
	t.Logf("second process built and pushed in %v", time.Since(start).Round(time.Millisecond))
	var childID string
	for sc := bufio.NewScanner(&stdout); sc.Scan(); {
		if id, ok := strings.CutPrefix(sc.Text(), reproLine); ok {
			childID = id
		}
	}
	if childID == "" {
		t.Fatalf("the second process reported no image ID; stdout:\n%s", stdout.String())
	}

	if childID != pushed.ImageID {
		t.Errorf("image ID differs between processes: %s here, %s in the second", pushed.ImageID, childID)
	}
	if got := configDigest(t, there); got != childID {
		t.Errorf("the second process reported %s but its registry holds config %s", childID, got)
	}
	if layersThere := layerDigests(t, there); !slices.Equal(layersHere, layersThere) {
		t.Errorf("layer digests differ between processes:\nhere:  %v\nthere: %v", layersHere, layersThere)
	}
}

// pushFrom is the child's half: the same Build and Push, to the registry the
// parent named.
func pushFrom(t *testing.T, opts nixbuild.Nix, flake string, proc artifact.BuildProcess, registryHost string) artifact.Image {
	t.Helper()
	ws := build(t, opts, flake, proc)
	res, err := image.PushWorkspace(t.Context(), ws, registryHost, app, image.PushOptions{Options: image.Options{TempDir: t.TempDir()}})
	if err != nil {
		t.Fatalf("push: %v", err)
	}
	return res.Images[process]
}

func manifestOf(t *testing.T, reg *testRegistry) *v1.Manifest {
	t.Helper()
	img, err := remote.Image(reg.ref(t), remote.WithContext(t.Context()))
	if err != nil {
		t.Fatal(err)
	}
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func configDigest(t *testing.T, reg *testRegistry) string {
	t.Helper()
	return manifestOf(t, reg).Config.Digest.String()
}

func layerDigests(t *testing.T, reg *testRegistry) []string {
	t.Helper()
	var ds []string
	for _, l := range manifestOf(t, reg).Layers {
		ds = append(ds, l.Digest.String())
	}
	return ds
}
