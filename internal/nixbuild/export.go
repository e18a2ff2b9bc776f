package nixbuild

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/herokunix/herokunix/internal/artifact"
)

// outputType is what detection found a build output to be.
type outputType int

const (
	outputPackage       outputType = iota // anything else: closure mode
	outputArchive                         // a docker-archive tarball (plain or gzip)
	outputStream                          // an executable script that streams a docker-archive
	outputNix2Container                   // nix2container's image JSON
)

// maxImageJSON bounds a nix2container JSON file we are willing to read.
const maxImageJSON = 64 << 20

// detected is the result of looking at a build output.
type detected struct {
	typ  outputType
	gzip bool
}

// detect looks at a store path's content to decide what kind of output it is.
func detect(path string) (detected, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return detected{}, err
	}
	if !fi.Mode().IsRegular() {
		return detected{typ: outputPackage}, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return detected{}, err
	}
	defer f.Close()
	head := make([]byte, 512)
	n, err := io.ReadFull(f, head)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return detected{}, err
	}
	head = head[:n]
	switch {
	case bytes.HasPrefix(head, []byte{0x1f, 0x8b}):
		return detected{typ: outputArchive, gzip: true}, nil
	case isTar(head):
		return detected{typ: outputArchive}, nil
	case bytes.HasPrefix(head, []byte("#!")) && fi.Mode().Perm()&0o111 != 0:
		return detected{typ: outputStream}, nil
	case bytes.HasPrefix(bytes.TrimLeft(head, " \t\r\n"), []byte("{")) && fi.Size() <= maxImageJSON:
		b, err := os.ReadFile(path)
		if err != nil {
			return detected{}, err
		}
		if _, err := parseNix2Container(b); err == nil {
			return detected{typ: outputNix2Container}, nil
		}
	}
	return detected{typ: outputPackage}, nil
}

// isTar reports whether head starts a ustar (POSIX or GNU) tar archive.
func isTar(head []byte) bool {
	return len(head) >= 262 && string(head[257:262]) == "ustar"
}

// nix2containerImage is the part of nix2container's JSON we need.
type nix2containerImage struct {
	Version     *int            `json:"version"`
	ImageConfig json.RawMessage `json:"image-config"`
	Layers      []struct {
		Paths []struct {
			Path string `json:"path"`
		} `json:"paths"`
		LayerPath string `json:"layer-path"`
	} `json:"layers"`
}

// parseNix2Container parses nix2container image JSON (format version 1) and
// returns the store paths its layers need: every listed path and every
// prebuilt layer tarball, sorted and without duplicates.
func parseNix2Container(b []byte) ([]string, error) {
	var img nix2containerImage
	if err := json.Unmarshal(b, &img); err != nil {
		return nil, fmt.Errorf("parsing nix2container JSON: %w", err)
	}
	if img.Version == nil || *img.Version != 1 {
		return nil, errors.New("not nix2container JSON: no \"version\": 1")
	}
	if img.ImageConfig == nil && img.Layers == nil {
		return nil, errors.New("not nix2container JSON: no \"image-config\" or \"layers\"")
	}
	seen := map[string]bool{}
	var paths []string
	add := func(p string) error {
		sp, ok := storePathOf(p)
		if !ok {
			return fmt.Errorf("nix2container JSON lists %q, which is not in the Nix store", p)
		}
		if !seen[sp] {
			seen[sp] = true
			paths = append(paths, sp)
		}
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
	sort.Strings(paths)
	return paths, nil
}

// storePathOf returns the top-level store path that p is in.
func storePathOf(p string) (string, bool) {
	const store = "/nix/store/"
	if !strings.HasPrefix(p, store) || filepath.Clean(p) != strings.TrimSuffix(p, "/") {
		return "", false
	}
	name, _, _ := strings.Cut(p[len(store):], "/")
	sp := store + name
	return sp, artifact.IsStorePath(sp)
}

// export puts what the push needs for one process into the workspace.
func (o Options) export(ctx context.Context, ws, name string, p Process, out string) (*artifact.ProcessOutput, error) {
	det, err := detect(out)
	if err != nil {
		return nil, fmt.Errorf("inspecting build output: %w", err)
	}
	kind := p.Kind
	if kind == "" {
		switch det.typ {
		case outputArchive, outputStream:
			kind = artifact.KindDockerArchive
		case outputNix2Container:
			kind = artifact.KindNix2Container
		default:
			kind = artifact.KindClosure
		}
	}
	po := &artifact.ProcessOutput{
		Attribute: p.Attribute,
		Kind:      kind,
		OutPath:   out,
		Command:   p.Command,
	}
	switch kind {
	case artifact.KindDockerArchive:
		switch det.typ {
		case outputStream:
			po.Archive = name + ".tar"
			err = o.runStream(ctx, out, filepath.Join(ws, po.Archive))
		case outputArchive:
			po.Archive = name + ".tar"
			if det.gzip {
				po.Archive += ".gz"
			}
			err = linkOrCopy(out, filepath.Join(ws, po.Archive))
		default:
			err = errors.New("output is neither a docker-archive tarball nor an executable script that streams one")
		}
	case artifact.KindNix2Container:
		po.Nix2ContainerJSON = name + ".json"
		po.Closure, err = o.exportNix2Container(ctx, ws, out, filepath.Join(ws, po.Nix2ContainerJSON))
	case artifact.KindClosure:
		if len(po.Command) == 0 {
			if po.Command, err = defaultCommand(out); err != nil {
				return nil, err
			}
		}
		po.Closure, err = o.exportClosure(ctx, ws, []string{out})
	}
	if err != nil {
		return nil, err
	}
	return po, nil
}

// defaultCommand is the command of a closure-mode process that names none:
// the package's only executable in bin/.
func defaultCommand(out string) ([]string, error) {
	entries, err := os.ReadDir(filepath.Join(out, "bin"))
	if err == nil && len(entries) == 1 {
		return []string{filepath.Join(out, "bin", entries[0].Name())}, nil
	}
	return nil, fmt.Errorf("no command given, and %s/bin does not hold exactly one program to default to", out)
}

// runStream runs a streamLayeredImage script (directly, no shell) with its
// stdout in dst, and checks that what it wrote is a tar archive.
func (o Options) runStream(ctx context.Context, script, dst string) error {
	f, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	runErr := o.run(ctx, "running image stream script "+script, script, nil, f)
	if err := f.Close(); err != nil && runErr == nil {
		runErr = err
	}
	if runErr != nil {
		return runErr
	}
	d, err := detect(dst)
	if err != nil {
		return err
	}
	if d.typ != outputArchive {
		return fmt.Errorf("%s did not write a tar archive", script)
	}
	return nil
}

// exportNix2Container copies the image JSON to dst and the closure of every
// store path its layers use into the workspace.
func (o Options) exportNix2Container(ctx context.Context, ws, out, dst string) ([]artifact.StorePath, error) {
	fi, err := os.Stat(out)
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() || fi.Size() > maxImageJSON {
		return nil, fmt.Errorf("output is not a nix2container JSON file of at most %d bytes", maxImageJSON)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		return nil, err
	}
	paths, err := parseNix2Container(b)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(dst, b, 0o644); err != nil {
		return nil, err
	}
	if len(paths) == 0 {
		return nil, nil
	}
	return o.exportClosure(ctx, ws, paths)
}

// exportClosure lists the closure of roots with sizes and copies it under
// <ws>/root/nix/store: with `nix copy`, then a plain file copy of whatever
// that did not leave there.
func (o Options) exportClosure(ctx context.Context, ws string, roots []string) ([]artifact.StorePath, error) {
	args := append([]string{"path-info", "--recursive", "--json"}, roots...)
	out, err := o.nix(ctx, "nix path-info", args...)
	if err != nil {
		return nil, err
	}
	closure, err := ParsePathInfo(out)
	if err != nil {
		return nil, err
	}
	root := filepath.Join(ws, artifact.StoreRoot)
	// The store URL carries the root as a query parameter; a path with
	// characters a URL would mangle goes straight to the file copy.
	if !strings.ContainsAny(root, "?&#%+= \t\n") {
		args := append([]string{"copy", "--no-check-sigs", "--to", "local?root=" + root}, roots...)
		if _, err := o.nix(ctx, "nix copy", args...); err != nil {
			if ctx.Err() != nil {
				return nil, err
			}
			if o.Stderr != nil {
				fmt.Fprintf(o.Stderr, "herokunix: nix copy failed, copying the closure's files instead: %v\n", err)
			}
		}
	}
	for _, sp := range closure {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		dst := filepath.Join(root, sp.Path)
		if _, err := os.Lstat(dst); err == nil {
			continue
		}
		if err := copyStorePath(sp.Path, dst); err != nil {
			return nil, fmt.Errorf("copying %s into the workspace: %w", sp.Path, err)
		}
	}
	return closure, nil
}
