package image

import (
	"archive/tar"
	"fmt"
	"io"
	"path"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// Whiteouts, as the OCI image spec defines them: a file ".wh.<name>" in a
// layer hides <name> in the layers below; ".wh..wh..opq" in a directory
// hides everything the layers below put in it.
const (
	whiteoutPrefix = ".wh."
	whiteoutOpaque = ".wh..wh..opq"
)

// squashed is one entry of a squashed layer: its final header, which layer
// and entry gave it, and where in the output it is written.
type squashed struct {
	hdr        *tar.Header
	layer, ord int
	emit       [2]int // (layer, entry) at which it is written
}

// squash writes layers (bottom first) as one layer with the file tree a
// container sees with them stacked: a later entry replaces an earlier one of
// the same name, whiteouts remove what they hide from the layers below and
// are kept (they still apply to layers under the squashed one). Each entry
// is written where its final version is in the input, except directories,
// which are written where they first appear so that they precede their
// contents. The output depends only on the input layers' contents, so a
// squashed layer's digest is stable while they are unchanged.
func squash(layers []v1.Layer, tmpDir string) (*sectionLayer, error) {
	final := map[string]*squashed{}
	for li, l := range layers {
		err := eachEntry(l, func(ord int, hdr *tar.Header, _ io.Reader) error {
			name, err := entryName(hdr.Name)
			if err != nil {
				return err
			}
			dir, base := path.Split(name)
			dir = strings.TrimSuffix(dir, "/")
			switch {
			case base == whiteoutOpaque:
				removeBelow(final, dir, li, false)
			case strings.HasPrefix(base, whiteoutPrefix):
				removeBelow(final, path.Join(dir, strings.TrimPrefix(base, whiteoutPrefix)), li, true)
			}
			e := &squashed{hdr: hdr, layer: li, ord: ord, emit: [2]int{li, ord}}
			if old, ok := final[name]; ok {
				if old.hdr.Typeflag == tar.TypeDir && hdr.Typeflag == tar.TypeDir {
					e.emit = old.emit
				} else if old.hdr.Typeflag == tar.TypeDir {
					// A file replacing a directory hides its contents.
					removeBelow(final, name, li, false)
				}
			}
			final[name] = e
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("merging layer %d: %w", li, err)
		}
	}
	at := make(map[[2]int]*squashed, len(final))
	for _, e := range final {
		at[e.emit] = e
	}
	return spool(tmpDir, func(w io.Writer) error {
		tw := tar.NewWriter(w)
		for li, l := range layers {
			err := eachEntry(l, func(ord int, _ *tar.Header, body io.Reader) error {
				e := at[[2]int{li, ord}]
				if e == nil {
					return nil
				}
				if err := tw.WriteHeader(e.hdr); err != nil {
					return err
				}
				if e.layer == li && e.ord == ord && e.hdr.Typeflag == tar.TypeReg {
					if _, err := io.Copy(tw, body); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				return fmt.Errorf("merging layer %d: %w", li, err)
			}
		}
		return tw.Close()
	})
}

// removeBelow drops the entries layers below layer put at name (when self)
// and under it.
func removeBelow(final map[string]*squashed, name string, layer int, self bool) {
	prefix := name + "/"
	if name == "" || name == "." {
		prefix = ""
	}
	for k, e := range final {
		if e.layer < layer && (self && k == name || strings.HasPrefix(k, prefix)) {
			delete(final, k)
		}
	}
}

// eachEntry calls f for every entry of l's tar stream, in order, with a
// reader of its body.
func eachEntry(l v1.Layer, f func(ord int, hdr *tar.Header, body io.Reader) error) error {
	rc, err := l.Uncompressed()
	if err != nil {
		return err
	}
	defer rc.Close()
	return eachTarEntry(rc, f)
}

// eachTarEntry calls f for every entry of the tar stream r (global
// headers aside), in order, with a reader of its body.
func eachTarEntry(r io.Reader, f func(ord int, hdr *tar.Header, body io.Reader) error) error {
	tr := tar.NewReader(r)
	for ord := 0; ; ord++ {
		hdr, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("reading tar: %w", err)
		}
		if hdr.Typeflag == tar.TypeXGlobalHeader {
			continue
		}
		if err := f(ord, hdr, tr); err != nil {
			return err
		}
	}
}

// mergeToBudget fits a read-as-is image (a docker-archive's) into budget
// layers by squashing its lowest layers into one (see mergeRuns). cfg's
// history is rewritten to match, or dropped if it did not match the layers.
func mergeToBudget(cfg *v1.ConfigFile, layers []v1.Layer, budget int, tmpDir string) ([]v1.Layer, error) {
	if len(layers) <= budget {
		return layers, nil
	}
	runs := mergeRuns(len(layers), budget)
	m := runs[0][1]
	merged, err := squash(layers[:m], tmpDir)
	if err != nil {
		return nil, err
	}
	out := append([]v1.Layer{merged}, layers[m:]...)

	nonEmpty := 0
	for _, h := range cfg.History {
		if !h.EmptyLayer {
			nonEmpty++
		}
	}
	if nonEmpty != len(layers) {
		cfg.History = nil
		return out, nil
	}
	var hist []v1.History
	idx := -1
	for _, h := range cfg.History {
		if h.EmptyLayer {
			hist = append(hist, h)
			continue
		}
		switch idx++; {
		case idx < m-1:
		case idx == m-1:
			hist = append(hist, v1.History{Created: h.Created, CreatedBy: mergedHistory(m)})
		default:
			hist = append(hist, h)
		}
	}
	cfg.History = hist
	return out, nil
}

func mergedHistory(n int) string {
	return fmt.Sprintf("herokunix: the lowest %d layers merged to fit the layer budget", n)
}
