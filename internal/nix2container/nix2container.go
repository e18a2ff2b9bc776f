// Package nix2container reads nix2container's image JSON (format version 1):
// the one parser both the build (to recognise an output and copy the store
// paths its layers need) and the push (to make the image) use.
//
// The JSON comes from a build of user code, so Parse bounds its size and
// StorePaths refuses paths outside the Nix store.
package nix2container

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"syscall"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/herokunix/herokunix/internal/artifact"
)

// MaxSize bounds an image JSON file: room for a million listed paths.
const MaxSize = 64 << 20

// Image is nix2container's image JSON.
type Image struct {
	Version *int `json:"version"`
	// ImageConfig is nil when the JSON has none.
	ImageConfig *v1.Config `json:"image-config"`
	Layers      []Layer    `json:"layers"`
	Arch        string     `json:"arch"`
	Created     *time.Time `json:"created"`
}

// Layer is one layer: store paths to tar, or a prebuilt tarball (LayerPath).
type Layer struct {
	Digest    string     `json:"digest"`
	Size      int64      `json:"size"`
	DiffIDs   string     `json:"diff_ids"`
	Paths     []Path     `json:"paths,omitempty"`
	MediaType string     `json:"mediatype"`
	LayerPath string     `json:"layer-path,omitempty"`
	History   v1.History `json:"History"`
}

// Path is a store path of a layer with how to write it.
type Path struct {
	Path    string   `json:"path"`
	Tar     string   `json:"tar,omitempty"`
	Options *Options `json:"options,omitempty"`
}

// Options rewrite a path's names and permissions in its layer.
type Options struct {
	Rewrite struct {
		Regex string `json:"regex"`
		Repl  string `json:"repl"`
	} `json:"rewrite"`
	Perms []struct {
		Regex  string `json:"regex"`
		Mode   string `json:"mode"`
		OrMode string `json:"orMode,omitempty"`
		UID    int    `json:"uid"`
		GID    int    `json:"gid"`
		Uname  string `json:"uname"`
		Gname  string `json:"gname"`
	} `json:"perms,omitempty"`
	IgnoreDestination string `json:"ignoreDestination,omitempty"`
}

// Parse parses image JSON of at most MaxSize bytes, refusing anything that
// is not format version 1 with an image config or layers.
func Parse(b []byte) (*Image, error) {
	if len(b) > MaxSize {
		return nil, fmt.Errorf("nix2container image JSON is %d bytes, more than %d", len(b), MaxSize)
	}
	var img Image
	if err := json.Unmarshal(b, &img); err != nil {
		return nil, fmt.Errorf("parsing nix2container image JSON: %w", err)
	}
	if img.Version == nil {
		return nil, errors.New("not nix2container image JSON: no \"version\"")
	}
	if *img.Version != 1 {
		return nil, fmt.Errorf("nix2container image JSON has version %d; herokunix reads version 1", *img.Version)
	}
	if img.ImageConfig == nil && img.Layers == nil {
		return nil, errors.New("not nix2container image JSON: no \"image-config\" or \"layers\"")
	}
	return &img, nil
}

// ReadFile reads and parses the image JSON file at p, which must be a
// regular file of at most MaxSize bytes (a FIFO is refused, not waited on).
// It returns the bytes read too.
func ReadFile(p string) (*Image, []byte, error) {
	f, err := os.OpenFile(p, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("reading nix2container image JSON: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, nil, fmt.Errorf("reading nix2container image JSON: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, nil, fmt.Errorf("nix2container image JSON %s is a %s, not a regular file", p, fi.Mode().Type())
	}
	b, err := io.ReadAll(io.LimitReader(f, MaxSize+1))
	if err != nil {
		return nil, nil, fmt.Errorf("reading nix2container image JSON: %w", err)
	}
	img, err := Parse(b)
	if err != nil {
		return nil, nil, err
	}
	return img, b, nil
}

// StorePaths returns the top-level store paths the layers need: those of
// every listed path and every prebuilt layer tarball, sorted and without
// duplicates.
func (img *Image) StorePaths() ([]string, error) {
	var paths []string
	add := func(p string) error {
		sp, ok := artifact.StorePathOf(p)
		if !ok {
			return fmt.Errorf("nix2container image JSON lists %q, which is not in the Nix store", p)
		}
		paths = append(paths, sp)
		return nil
	}
	for _, l := range img.Layers {
		for _, p := range l.Paths {
			if err := add(p.Path); err != nil {
				return nil, err
			}
		}
		if l.LayerPath != "" {
			if err := add(l.LayerPath); err != nil {
				return nil, err
			}
		}
	}
	slices.Sort(paths)
	return slices.Compact(paths), nil
}
