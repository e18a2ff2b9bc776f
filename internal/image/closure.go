package image

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"slices"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/herokunix/herokunix/internal/artifact"
)

// FromClosure makes an image of a closure copied under storeRoot (so that
// /nix/store/x is at <storeRoot>/nix/store/x) in at most opts.MaxLayers
// layers, grouped by planClosure: the most depended-on store paths at the
// bottom, one layer each while the budget lasts, and outPath alone on top. Its entrypoint is command (a relative command[0] such as
// bin/worker is taken inside outPath), or outPath's only program in bin/.
// Layers prev records as made from the same store paths with the same NAR
// hashes (StorePath.NarHash) are reused from the registry without reading
// the files; prev may be nil. A layer is recorded for the next build only
// when what was read of each of its store paths matched its NAR hash; a
// store path read whole that does not is a NarMismatchError.
func FromClosure(storeRoot string, closure []artifact.StorePath, outPath string, command []string, opts Options, prev v1.Image) (v1.Image, Stats, error) {
	opts = opts.orDefault()
	if !artifact.IsStorePath(outPath) {
		return nil, Stats{}, fmt.Errorf("output %q is not a store path", outPath)
	}
	paths := slices.Clone(closure)
	narHashes := make(map[string]string, len(paths))
	for _, sp := range paths {
		if !artifact.IsStorePath(sp.Path) {
			return nil, Stats{}, fmt.Errorf("closure lists %q, which is not a store path", sp.Path)
		}
		if _, dup := narHashes[sp.Path]; dup {
			return nil, Stats{}, fmt.Errorf("closure lists %s twice", sp.Path)
		}
		narHashes[sp.Path] = sp.NarHash
	}
	if _, ok := narHashes[outPath]; !ok {
		return nil, Stats{}, fmt.Errorf("closure does not include the output %s", outPath)
	}
	groups := planClosure(paths, outPath, opts.MaxLayers)

	root, err := os.OpenRoot(storeRoot)
	if err != nil {
		return nil, Stats{}, fmt.Errorf("opening store root: %w", err)
	}
	defer root.Close()
	entry, err := entrypoint(root, outPath, command)
	if err != nil {
		return nil, Stats{}, err
	}

	keys := make([]string, len(groups))
	history := make([]v1.History, len(groups))
	for i, grp := range groups {
		keys[i] = closureKey(grp, narHashes)
		history[i] = v1.History{Created: v1.Time{Time: epoch}, CreatedBy: "herokunix: " + describeGroup(grp)}
	}
	set, err := obtainLayers(keys, newReuseIndex(prev), func(i int) (v1.Layer, bool, error) {
		var verified bool
		l, err := spool(opts.TempDir, func(w io.Writer) error {
			t := newTree(root, &budget{lim: opts})
			for _, sp := range groups[i] {
				if err := t.addStorePath(sp, nil, narHashes[sp]); err != nil {
					return err
				}
			}
			var err error
			verified, err = t.writeTar(w)
			return err
		})
		if err != nil {
			return nil, false, fmt.Errorf("making the layer of %s: %w", describeGroup(groups[i]), err)
		}
		return l, verified, nil
	})
	if err != nil {
		return nil, Stats{}, err
	}
	cfg := v1.ConfigFile{
		Created: v1.Time{Time: epoch},
		Config: v1.Config{
			Entrypoint: entry,
			Env:        []string{"PATH=" + outPath + "/bin:/usr/bin:/bin"},
		},
	}
	return finish(cfg, set, history)
}

// closureKey names the content of a closure-mode layer by its store paths
// and the NAR hashes claimed for them: <path>@<narHash> for a layer of
// one, a hash of those for a merged layer. A layer is recorded for reuse
// only once its content matched these hashes, so a later build reuses it
// only for store paths it claims the same content of.
func closureKey(grp []string, narHashes map[string]string) string {
	if len(grp) == 1 {
		return narKey(grp[0], narHashes[grp[0]])
	}
	h := sha256.New()
	for _, sp := range grp {
		fmt.Fprintln(h, narKey(sp, narHashes[sp]))
	}
	return "merged:sha256:" + hex.EncodeToString(h.Sum(nil))
}

// narKey is a store path with the NAR hash claimed for it.
func narKey(storePath, narHash string) string { return storePath + "@" + narHash }

func describeGroup(grp []string) string {
	if len(grp) == 1 {
		return "store path " + grp[0]
	}
	return fmt.Sprintf("%d store paths (%s … %s)", len(grp), grp[0], grp[len(grp)-1])
}

// entrypoint resolves a process's command for closure mode.
func entrypoint(root *os.Root, outPath string, command []string) ([]string, error) {
	if len(command) > 0 {
		cmd := slices.Clone(command)
		switch c := cmd[0]; {
		case c == "":
			return nil, errors.New("command starts with an empty program name")
		case strings.HasPrefix(c, "/"):
		case strings.Contains(c, "/"):
			p := path.Join(outPath, c)
			if !strings.HasPrefix(p, outPath+"/") {
				return nil, fmt.Errorf("command %q points outside the output %s", c, outPath)
			}
			cmd[0] = p
		default:
			// A bare name: the output's own bin/ if it has it, else
			// left to PATH.
			p := outPath + "/bin/" + c
			if _, err := root.Lstat(strings.TrimPrefix(p, "/")); err == nil {
				cmd[0] = p
			}
		}
		return cmd, nil
	}
	bin := strings.TrimPrefix(outPath, "/") + "/bin"
	d, err := root.Open(bin)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("the process has no command and %s has no bin/ directory: set the process's command", outPath)
		}
		return nil, fmt.Errorf("reading %s/bin: %w", outPath, unwrapPathErr(err))
	}
	ents, err := d.ReadDir(-1)
	d.Close()
	if err != nil {
		return nil, fmt.Errorf("reading %s/bin: %w", outPath, err)
	}
	var progs []string
	for _, e := range ents {
		if !e.IsDir() {
			progs = append(progs, e.Name())
		}
	}
	slices.Sort(progs)
	switch len(progs) {
	case 1:
		return []string{outPath + "/bin/" + progs[0]}, nil
	case 0:
		return nil, fmt.Errorf("the process has no command and %s/bin holds no program: set the process's command", outPath)
	default:
		return nil, fmt.Errorf("the process has no command and %s/bin holds %d programs (%s): set the process's command to choose one", outPath, len(progs), strings.Join(progs, ", "))
	}
}
