package herokustub

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"io"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"

	. "github.com/onsi/gomega"

	"github.com/herokunix/herokunix/test/fixtures"
)

// dynoFields are the properties of the Platform API's dyno (heroku-go v6
// schema.json, definitions.dyno.properties).
var dynoFields = []string{"app", "attach_url", "command", "created_at", "id", "name", "release", "size", "state", "type", "updated_at"}

func (f *fixture) pushAndRelease(t *testing.T, images map[string]v1.Image) map[string]string {
	t.Helper()
	ids := map[string]string{}
	var updates []string
	for _, typ := range slices.Sorted(maps.Keys(images)) {
		img := images[typ]
		if err := remote.Write(f.ref(t, "shop/"+typ), img, auth); err != nil {
			t.Fatal(err)
		}
		id, _ := img.ConfigName()
		ids[typ] = id.String()
		updates = append(updates, `{"type":"`+typ+`","docker_image":"`+id.String()+`"}`)
	}
	if a := f.call(t, "PATCH", "/apps/shop/formation", dockerReleases, "Bearer "+key, `{"updates":[`+strings.Join(updates, ",")+`]}`); a.status != 200 {
		t.Fatalf("release: %d %s", a.status, a.body)
	}
	return ids
}

func (f *fixture) dynos(t *testing.T) []map[string]any {
	t.Helper()
	a := f.get(t, "/apps/shop/dynos")
	if a.status != 200 {
		t.Fatalf("GET dynos: %d %s", a.status, a.body)
	}
	var list []map[string]any
	if err := json.Unmarshal(a.body, &list); err != nil {
		t.Fatal(err)
	}
	return list
}

func TestDynosFollowTheFormationAndTheCurrentRelease(t *testing.T) {
	f := newFixture(t, Options{DynoState: DynoStarting})
	f.pushAndRelease(t, map[string]v1.Image{"web": image(t, "amd64")})
	list := f.dynos(t)
	if len(list) != 1 {
		t.Fatalf("dynos = %v, want web.1", list)
	}
	if got := slices.Sorted(maps.Keys(list[0])); !slices.Equal(got, dynoFields) {
		t.Errorf("dyno fields %v, want the schema's %v", got, dynoFields)
	}
	rel := list[0]["release"].(map[string]any)
	if list[0]["name"] != "web.1" || list[0]["type"] != "web" || list[0]["state"] != DynoStarting || rel["version"] != float64(3) {
		t.Errorf("dyno = %v", list[0])
	}
	if err := f.s.SetDynoState("shop", "web", DynoUp); err != nil {
		t.Fatal(err)
	}
	if a := f.call(t, "PATCH", "/apps/shop/formation", v3, "Bearer "+key, `{"updates":[{"type":"web","quantity":2}]}`); a.status != 200 {
		t.Fatalf("scale: %d %s", a.status, a.body)
	}
	var states []string
	for _, d := range f.dynos(t) {
		states = append(states, d["name"].(string)+" "+d["state"].(string))
	}
	if !slices.Equal(states, []string{"web.1 up", "web.2 starting"}) {
		t.Errorf("after scaling to 2: %v", states)
	}
	// A new release restarts every dyno on it.
	f.pushAndRelease(t, map[string]v1.Image{"web": image(t, "amd64")})
	for _, d := range f.dynos(t) {
		if d["release"].(map[string]any)["version"] != float64(4) || d["state"] != DynoStarting {
			t.Errorf("after release v4: %v", d)
		}
	}
}

var (
	serverOnce sync.Once
	serverBin  []byte
	serverErr  error
)

// serverImage is the fixture server in an image whose command is cmd, with
// a curl entry on its PATH when withCurl.
func serverImage(t *testing.T, withCurl bool, cmd ...string) v1.Image {
	t.Helper()
	serverOnce.Do(func() {
		bin := filepath.Join(os.TempDir(), "herokustub-fixture-server-"+newID())
		defer os.Remove(bin)
		if serverErr = fixtures.BuildServer(bin); serverErr == nil {
			serverBin, serverErr = os.ReadFile(bin)
		}
	})
	if serverErr != nil {
		t.Fatal(serverErr)
	}
	server := serverBin
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	add := func(name string, body []byte) {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o555, Size: int64(len(body)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		_, _ = tw.Write(body)
	}
	add("bin/server", server)
	if withCurl {
		add("bin/curl", []byte("#!/bin/sh\n"))
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(buf.Bytes())), nil },
		tarball.WithMediaType(types.DockerLayer))
	if err != nil {
		t.Fatal(err)
	}
	img, err := mutate.AppendLayers(mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.DockerManifestSchema2), types.DockerConfigJSON), layer)
	if err != nil {
		t.Fatal(err)
	}
	cf, _ := img.ConfigFile()
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", "amd64"
	cf.Config.Cmd, cf.Config.Env = cmd, []string{"PATH=/bin"}
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		t.Fatal(err)
	}
	return img
}

// eventually polls cond until it holds, failing after a minute.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	NewWithT(t).Eventually(cond).WithTimeout(time.Minute).WithPolling(20*time.Millisecond).Should(BeTrue(), what)
}

func TestRunImagesReportsWhatTheWebDynoReallyDoes(t *testing.T) {
	f := newFixture(t, Options{RunImages: true, DynoDir: t.TempDir()})
	f.pushAndRelease(t, map[string]v1.Image{"web": serverImage(t, false, "/bin/server")})
	var up Dyno
	eventually(t, "web.1 up", func() bool {
		ds := f.s.Dynos("shop")
		if len(ds) == 1 && ds[0].State == DynoUp {
			up = ds[0]
			return true
		}
		return len(ds) == 1 && ds[0].State == DynoCrashed
	})
	if up.State != DynoUp {
		t.Fatalf("the server crashed: %+v", f.s.Dynos("shop"))
	}
	resp, err := httpGet(up.URL + "/")
	if err != nil || resp != fixtures.ServerGreeting {
		t.Errorf("GET / on the dyno: %q, %v", resp, err)
	}

	// An image whose web process exits at once crashes on boot.
	f.pushAndRelease(t, map[string]v1.Image{"web": serverImage(t, false, "/bin/server", "fail", "error: libfoo.so: not found")})
	eventually(t, "web.1 crashed", func() bool {
		ds := f.s.Dynos("shop")
		return len(ds) == 1 && ds[0].ReleaseVersion == 4 && ds[0].State == DynoCrashed
	})
	if out := f.s.Dynos("shop")[0].Output; !strings.Contains(out, "libfoo.so") {
		t.Errorf("crashed dyno's output %q", out)
	}
	if got := f.dynos(t)[0]["state"]; got != DynoCrashed {
		t.Errorf("the API lists web.1 as %v", got)
	}
}

func TestRunImagesRunsTheReleasePhaseAndStreamsItsOutput(t *testing.T) {
	f := newFixture(t, Options{RunImages: true, DynoDir: t.TempDir()})
	web := serverImage(t, false, "/bin/server")
	for _, withCurl := range []bool{true, false} {
		f.pushAndRelease(t, map[string]v1.Image{"web": web,
			"release": serverImage(t, withCurl, "/bin/server", "fail", "migrating", "error: relation \"users\" does not exist")})
		rels := f.s.Releases("shop")
		last := rels[len(rels)-1]
		eventually(t, "the release phase ends", func() bool {
			for _, r := range f.s.Releases("shop") {
				if r.ID == last.ID {
					return r.Status != "pending"
				}
			}
			return false
		})
		a := f.get(t, "/apps/shop/releases/"+last.ID)
		var rel struct {
			Status          string  `json:"status"`
			OutputStreamURL *string `json:"output_stream_url"`
		}
		if err := json.Unmarshal(a.body, &rel); err != nil || rel.Status != "failed" || rel.OutputStreamURL == nil {
			t.Fatalf("release %s: %+v %v", a.body, rel, err)
		}
		stream := f.call(t, "GET", strings.TrimPrefix(*rel.OutputStreamURL, f.api.URL), "", "", "")
		if !withCurl {
			if stream.status != 404 {
				t.Errorf("without curl the stream answers %d %q, want 404", stream.status, stream.body)
			}
			continue
		}
		if want := "migrating\nerror: relation \"users\" does not exist\n"; stream.status != 200 || string(stream.body) != want {
			t.Errorf("stream %d %q, want %q", stream.status, stream.body, want)
		}
		resumed := f.call(t, "GET", strings.TrimPrefix(*rel.OutputStreamURL, f.api.URL), "", "", "", "Range", "bytes=10-")
		if resumed.status != 206 || !strings.HasPrefix(string(resumed.body), "error:") {
			t.Errorf("resumed stream %d %q", resumed.status, resumed.body)
		}
	}
}

func httpGet(url string) (string, error) {
	resp, err := http.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}
