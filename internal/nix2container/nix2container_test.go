package nix2container

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

const (
	storeA = "/nix/store/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-a"
	storeB = "/nix/store/bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb-b-1.0"
)

func TestStorePathsListsTheStorePathsOfItsLayers(t *testing.T) {
	b := fmt.Sprintf(`{"version":1,"image-config":{"Entrypoint":["%[1]s/bin/x"]},"layers":[
		{"paths":[{"path":%[2]q},{"path":%[3]q,"options":{"perms":[]}}]},
		{"paths":[{"path":%[1]q}],"layer-path":%[4]q}]}`,
		storeB, storeB+"/bin", storeA, storeA+"/layer.tar")
	img, err := Parse([]byte(b))
	if err != nil {
		t.Fatal(err)
	}
	got, err := img.StorePaths()
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{storeA, storeB}; !slices.Equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
	for _, bad := range []string{
		`{"version":1,"layers":[{"paths":[{"path":"/etc"}]}]}`,
		`{"version":1,"layers":[{"paths":[{"path":"` + storeA + `/../../etc"}]}]}`,
		`{"version":1,"layers":[{"layer-path":"/tmp/layer.tar"}]}`,
		`{"version":1,"layers":[{"layer-path":"` + storeA + `/x\u0000"}]}`,
	} {
		img, err := Parse([]byte(bad))
		if err != nil {
			t.Fatalf("%s: %v", bad, err)
		}
		if _, err := img.StorePaths(); err == nil {
			t.Errorf("StorePaths accepted %s", bad)
		}
	}
}

func TestParseRefusesWhatIsNotNix2ContainerJSON(t *testing.T) {
	for _, bad := range []string{
		`{"version":1}`,
		`{"layers":[]}`,
		`{"version":2,"layers":[]}`,
		`[1]`,
		`{"version":1,"layers":[]` + strings.Repeat(" ", MaxSize) + `}`,
	} {
		if _, err := Parse([]byte(bad)); err == nil {
			t.Errorf("accepted %.40s", bad)
		}
	}
}

func TestReadFileRefusesAFileOverTheCap(t *testing.T) {
	p := filepath.Join(t.TempDir(), "image.json")
	if err := os.WriteFile(p, []byte(`{"version":1,"layers":[]`+strings.Repeat(" ", MaxSize)+`}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := ReadFile(p); err == nil || !strings.Contains(err.Error(), "more than") {
		t.Fatalf("error %v, want one about the size", err)
	}
}
