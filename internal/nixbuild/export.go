package nixbuild

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/herokunix/herokunix/internal/artifact"
	"github.com/herokunix/herokunix/internal/nix2container"
)

// outputType is what detection found a build output to be.
type outputType int

const (
	outputPackage       outputType = iota // anything else: closure mode
	outputArchive                         // a docker-archive tarball (plain or gzip)
	outputStream                          // an executable script that streams a docker-archive
	outputNix2Container                   // nix2container's image JSON
)

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
	case artifact.IsGzip(head):
		return detected{typ: outputArchive, gzip: true}, nil
	case artifact.IsTar(head):
		return detected{typ: outputArchive}, nil
	case bytes.HasPrefix(head, []byte("#!")) && fi.Mode().Perm()&0o111 != 0:
		return detected{typ: outputStream}, nil
	case bytes.HasPrefix(bytes.TrimLeft(head, " \t\r\n"), []byte("{")) && fi.Size() <= nix2container.MaxSize:
		if _, _, err := readNix2Container(path); err == nil {
			return detected{typ: outputNix2Container}, nil
		}
	}
	return detected{typ: outputPackage}, nil
}

// readNix2Container reads nix2container image JSON and the store paths its
// layers need.
func readNix2Container(path string) ([]byte, []string, error) {
	img, b, err := nix2container.ReadFile(path)
	if err != nil {
		return nil, nil, err
	}
	paths, err := img.StorePaths()
	if err != nil {
		return nil, nil, err
	}
	return b, paths, nil
}

// export puts what the push needs for one process into the workspace.
func (o Nix) export(ctx context.Context, ws, name string, p artifact.BuildProcess, out string) (*artifact.ProcessOutput, error) {
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
		// A process without a command gets the package's only program,
		// worked out where the image is made (image.FromClosure).
		po.Closure, err = o.exportClosure(ctx, ws, []string{out})
	}
	if err != nil {
		return nil, err
	}
	return po, nil
}

// runStream runs a streamLayeredImage script (directly, no shell) with its
// stdout in dst, and checks that what it wrote is a tar archive.
func (o Nix) runStream(ctx context.Context, script, dst string) error {
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
func (o Nix) exportNix2Container(ctx context.Context, ws, out, dst string) ([]artifact.StorePath, error) {
	b, paths, err := readNix2Container(out)
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
// <ws>/root/nix/store, file by file: the push reads only the files (and
// hashes each path against its narHash as it does), so `nix copy` into a
// store there, with a database nobody reads, would only cost a Nix
// invocation per build.
func (o Nix) exportClosure(ctx context.Context, ws string, roots []string) ([]artifact.StorePath, error) {
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
