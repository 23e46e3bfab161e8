package lab

import (
	"debug/elf"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
)

// libDirs are where the dynamic loader of a Debian-like system finds
// shared libraries (its trusted directories; the lab's image has no
// ld.so.cache, so libraries go to the same paths there).
var libDirs = []string{
	"/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu",
	"/lib/aarch64-linux-gnu", "/usr/lib/aarch64-linux-gnu",
	"/lib64", "/usr/lib64", "/lib", "/usr/lib",
}

// ELFDeps returns the files a dynamically linked executable needs to run:
// its interpreter (the dynamic loader) and every shared library named by
// DT_NEEDED, recursively, as absolute paths on this machine. A static
// executable needs nothing. It reads ELF headers only (no ldd, which
// would run the loader on the file).
func ELFDeps(exe string) ([]string, error) {
	seen := map[string]bool{}
	var out []string
	var walk func(file string, rpath []string) error
	walk = func(file string, rpath []string) error {
		f, err := elf.Open(file)
		if err != nil {
			return fmt.Errorf("read ELF %s: %w", file, err)
		}
		defer f.Close()
		for _, p := range f.Progs {
			if p.Type != elf.PT_INTERP {
				continue
			}
			b := make([]byte, p.Filesz)
			if _, err := p.ReadAt(b, 0); err != nil {
				return fmt.Errorf("read the interpreter of %s: %w", file, err)
			}
			interp := strings.TrimRight(string(b), "\x00")
			if !seen[interp] {
				seen[interp] = true
				out = append(out, interp)
			}
		}
		needed, err := f.ImportedLibraries()
		if err != nil {
			return fmt.Errorf("read the libraries %s needs: %w", file, err)
		}
		dirs := slices.Clone(rpath)
		for _, tag := range []elf.DynTag{elf.DT_RUNPATH, elf.DT_RPATH} {
			if vals, err := f.DynString(tag); err == nil {
				for _, v := range vals {
					for _, d := range strings.Split(v, ":") {
						dirs = append(dirs, strings.ReplaceAll(d, "$ORIGIN", filepath.Dir(file)))
					}
				}
			}
		}
		dirs = append(dirs, libDirs...)
		for _, lib := range needed {
			p := findLib(lib, dirs, f.Class, f.Machine)
			if p == "" {
				return fmt.Errorf("%s needs %s, which is in none of %s", file, lib, strings.Join(libDirs, ", "))
			}
			if seen[p] {
				continue
			}
			seen[p] = true
			out = append(out, p)
			if err := walk(p, rpath); err != nil {
				return err
			}
		}
		return nil
	}
	if err := walk(exe, nil); err != nil {
		return nil, err
	}
	slices.Sort(out)
	return out, nil
}

// findLib finds a shared library of the given ELF class and machine (a
// 64-bit program cannot use a 32-bit library of the same name).
func findLib(name string, dirs []string, class elf.Class, machine elf.Machine) string {
	if strings.Contains(name, "/") {
		dirs, name = []string{filepath.Dir(name)}, filepath.Base(name)
	}
	for _, d := range dirs {
		p := filepath.Join(d, name)
		f, err := elf.Open(p)
		if err != nil {
			continue
		}
		ok := f.Class == class && f.Machine == machine
		f.Close()
		if ok {
			return p
		}
	}
	return ""
}
