package engine

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"regexp"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// On-host layout, compatible with Capistrano.
const (
	ReleasesDir  = "releases"      // <deploy_to>/releases/<id>/
	SharedDir    = "shared"        // <deploy_to>/shared/
	CurrentLink  = "current"       // <deploy_to>/current -> releases/<id>
	RevisionsLog = "revisions.log" // one line per switch or rollback
	// TempPrefix starts the name of anything being written that is not yet
	// complete: releases/.tmp-<id>-<rand> and current.tmp-<rand>. Such names
	// are never a release and are removed by Host.Clean (under the lock).
	TempPrefix = ".tmp-"
)

var releaseIDRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

// ValidateReleaseID rejects ids that could escape releases/ or hide: no
// '/', no "..", no leading dot, at most 128 characters of [A-Za-z0-9._-].
func ValidateReleaseID(id string) error {
	switch {
	case id == "":
		return fmt.Errorf("release id is empty")
	case strings.Contains(id, "/"):
		return fmt.Errorf("release id %q: must not contain '/'", id)
	case strings.Contains(id, ".."):
		return fmt.Errorf("release id %q: must not contain '..'", id)
	case strings.HasPrefix(id, "."):
		return fmt.Errorf("release id %q: must not start with '.'", id)
	case !releaseIDRe.MatchString(id):
		return fmt.Errorf("release id %q: use 1-128 letters, digits, '.', '_' or '-'", id)
	}
	return nil
}

// NewReleaseID returns the default release id: the UTC time as YYYYMMDDHHMMSS.
func NewReleaseID(now time.Time) string { return now.UTC().Format("20060102150405") }

// RandomSuffix returns n random bytes as hex, for temporary names.
func RandomSuffix(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// RevisionLine formats one revisions.log line (without newline):
//
//	2026-11-25T22:10:00Z deploy release=r2 previous=r1 actor=alice
func RevisionLine(t time.Time, info SwitchInfo) string {
	prev := info.Previous
	if prev == "" {
		prev = "-"
	}
	actor := info.Actor
	if actor == "" {
		actor = "-"
	}
	action := info.Action
	if action == "" {
		action = "deploy"
	}
	return fmt.Sprintf("%s %s release=%s previous=%s actor=%s",
		t.UTC().Format(time.RFC3339), oneWord(string(action)), oneWord(info.Release), oneWord(prev), oneWord(actor))
}

// oneWord keeps a revisions.log field one word on one line: spaces,
// control characters (a newline would add a forged line) and invalid
// UTF-8 become '_'.
func oneWord(s string) string {
	return strings.Map(func(r rune) rune {
		if r == utf8.RuneError || unicode.IsSpace(r) || !unicode.IsGraphic(r) {
			return '_'
		}
		return r
	}, s)
}
