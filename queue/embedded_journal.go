package queue

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
)

// The intake journal. An Enqueue is durable once its record is appended to
// the journal and the journal is fdatasynced: one write and one fdatasync
// for a whole group of concurrent Enqueues, where a bbolt commit is two
// fsyncs and rewrites every page it touched. The records reach the bbolt
// file later, at a checkpoint: every commit of the file (the committer's)
// first writes the jobs journaled since the last one. A job acked before
// its checkpoint is never written to the file at all, only its delivery id.
//
// Until its checkpoint a job is served from memory (Embedded.pending), and
// the file's jobs bucket sequence says which journal records are in the
// file: ids are handed out in order, and a checkpoint sets the sequence to
// the highest id it wrote. Opening the store replays the records above the
// sequence, then applies the lease log (attempts and acks) on top.
//
// Two files take turns: records go to the current one; a commit first
// makes the other one current if it is empty, and once the commit is on
// disk every record of the now-spare file is in it, so the spare is
// emptied: its next records are written over the old ones from its start.
// Writing over blocks a file already has, an fdatasync has no new size to
// make durable, which halves its time and CPU on ext4 (0.51 → 0.31 ms for
// a 360 KB group, 0.24 → 0.15 ms for one 25 KB record), where truncating
// and appending again made every fdatasync commit the filesystem's
// journal. An old record left past the new ones, or one that survives a
// truncation lost in a crash, has an id at or below the sequence and is
// skipped; a partly overwritten one fails its CRC and ends the file.
//
// Record: length of the body (uint32), CRC-32C of the body, then the body:
// job id (uint64), delivery id's expiry (unix ns), delivery id length
// (uint16), delivery id, and the job's record as the jobs bucket holds it.
// A record that is short or fails its CRC ends the file for replay: it is
// the torn tail of a group that was never acknowledged.
const (
	journalHeaderLen = 8
	journalFixedLen  = 8 + 8 + 2
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// journalRec is one journaled job, kept in memory until its checkpoint.
type journalRec struct {
	id      uint64
	expires int64
	key     []byte // the delivery id
	val     []byte // header and encoded job, as in the jobs bucket
	// job and payload are set for a job journaled uncompressed: val then
	// ends with the meta line, payload follows it in the journal, and a
	// checkpoint stores the job compressed. job's own Payload is nil. Both
	// are nil for a record journaled compressed or read back from the
	// journal, which is stored as it is.
	job     *Job
	payload []byte
}

// size is the memory r holds until its checkpoint (Embedded.pendingBytes).
func (r *journalRec) size() int { return len(r.val) + len(r.payload) }

func journalPaths(path string) [2]string {
	return [2]string{path + ".journal0", path + ".journal1"}
}

// appendJournalRec renders r's record but for its payload (r.payload),
// which follows it in the file.
func appendJournalRec(buf []byte, r *journalRec) []byte {
	start := len(buf)
	buf = append(buf, 0, 0, 0, 0, 0, 0, 0, 0)
	buf = binary.BigEndian.AppendUint64(buf, r.id)
	buf = binary.BigEndian.AppendUint64(buf, uint64(r.expires))
	buf = binary.BigEndian.AppendUint16(buf, uint16(len(r.key)))
	buf = append(buf, r.key...)
	buf = append(buf, r.val...)
	body := buf[start+journalHeaderLen:]
	binary.BigEndian.PutUint32(buf[start:], uint32(len(body)+len(r.payload)))
	binary.BigEndian.PutUint32(buf[start+4:], crc32.Update(crc32.Checksum(body, castagnoli), castagnoli, r.payload))
	return buf
}

// readJournal returns the whole records of b, in order, up to the first
// torn or corrupt one. The records point into b.
func readJournal(b []byte) []journalRec {
	var out []journalRec
	for len(b) >= journalHeaderLen {
		n := int(binary.BigEndian.Uint32(b))
		if n < journalFixedLen || n > len(b)-journalHeaderLen {
			break
		}
		body := b[journalHeaderLen : journalHeaderLen+n]
		if crc32.Checksum(body, castagnoli) != binary.BigEndian.Uint32(b[4:]) {
			break
		}
		kl := int(binary.BigEndian.Uint16(body[16:]))
		if journalFixedLen+kl+jobHeaderLen > n {
			break
		}
		out = append(out, journalRec{
			id:      binary.BigEndian.Uint64(body),
			expires: int64(binary.BigEndian.Uint64(body[8:])),
			key:     body[journalFixedLen : journalFixedLen+kl],
			val:     body[journalFixedLen+kl:],
		})
		b = b[journalHeaderLen+n:]
	}
	return out
}

// readJournals returns the records of both files above seq, by id, each
// once.
func readJournals(paths [2]string, seq uint64) ([]journalRec, error) {
	var recs []journalRec
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("read the intake journal: %w", err)
		}
		for _, r := range readJournal(b) {
			if r.id > seq {
				recs = append(recs, r)
			}
		}
	}
	slices.SortFunc(recs, func(a, b journalRec) int { return cmp.Compare(a.id, b.id) })
	return slices.CompactFunc(recs, func(a, b journalRec) bool { return a.id == b.id }), nil
}

// journal is the pair of files; the appender writes to files[cur], the
// committer rotates and empties the spare. Both hold Embedded.journalMu
// for it.
type journal struct {
	files [2]*os.File
	// size is where each file's next record goes: the end of its records
	// not yet known to be in the bbolt file. phys is how far each file
	// holds bytes, older records past size included.
	size [2]int64
	phys [2]int64
	cur  int
	// err is set when a failed append could not be undone: the current
	// file may hold, past its records, whole records of the failed group,
	// whose ids the next groups hand out again; one left past a shorter
	// new group would be replayed as a job that was never acknowledged.
	err error
	// The group being appended: the records' heads rendered one after the
	// other into buf, and where each payload goes between them. Payloads
	// are written from where Enqueue keeps them, not copied into buf.
	buf  []byte
	cuts []journalCut
	iov  [][]byte
}

// journalCut is a payload to write after buf[:end].
type journalCut struct {
	end     int
	payload []byte
}

// openJournal opens both files empty: their records must be in the bbolt
// file already (recover replays them first).
func openJournal(path string) (*journal, error) {
	j := &journal{}
	for i, p := range journalPaths(path) {
		f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY, 0o600)
		if err == nil {
			err = f.Truncate(0)
		}
		if err != nil {
			j.close()
			return nil, fmt.Errorf("open the intake journal: %w", err)
		}
		j.files[i] = f
	}
	// The files must exist after a machine crash, or the records in them
	// would go with them.
	if err := syncDir(filepath.Dir(path)); err != nil {
		j.close()
		return nil, fmt.Errorf("open the intake journal: %w", err)
	}
	return j, nil
}

// stage adds r to the group the next append writes.
func (j *journal) stage(r *journalRec) {
	j.buf = appendJournalRec(j.buf, r)
	if len(r.payload) > 0 {
		j.cuts = append(j.cuts, journalCut{len(j.buf), r.payload})
	}
}

// append writes the staged group to the current file after its records
// with one pwritev and makes it durable. On failure it cuts the file back
// to where its records end, so the next group starts on a record boundary
// with nothing of the failed one after it; if even that fails, it sets err,
// and the caller must append nothing more. Either way the group is done
// with.
func (j *journal) append() error {
	iov, from, size := j.iov[:0], 0, 0
	for _, c := range j.cuts {
		iov = append(iov, j.buf[from:c.end], c.payload)
		from = c.end
		size += len(c.payload)
	}
	if from < len(j.buf) {
		iov = append(iov, j.buf[from:])
	}
	size += len(j.buf)
	f := j.files[j.cur]
	err := writeAt(f, iov, j.size[j.cur])
	if err == nil {
		err = fdatasync(f)
	}
	// Nothing of the group stays referenced, and a rare huge group's
	// buffer is left to the collector.
	clear(iov)
	clear(j.cuts)
	j.iov, j.cuts = iov[:0], j.cuts[:0]
	if j.buf = j.buf[:0]; cap(j.buf) > 4<<20 {
		j.buf = nil
	}
	if err == nil {
		j.size[j.cur] += int64(size)
		j.phys[j.cur] = max(j.phys[j.cur], j.size[j.cur])
		return nil
	}
	if terr := f.Truncate(j.size[j.cur]); terr != nil {
		j.err = fmt.Errorf("the intake journal %s could not be cut back after a failed write (%w); restart the bot", f.Name(), terr)
	} else {
		j.phys[j.cur] = j.size[j.cur]
	}
	return err
}

// rotate makes the spare file current when it is empty.
func (j *journal) rotate() {
	if spare := 1 - j.cur; j.size[spare] == 0 {
		j.cur = spare
	}
}

// journalKeep is how large a spare file may stay when it is emptied; one
// grown past it in a burst is truncated, so the pair does not keep the
// disk it took then.
const journalKeep = 64 << 20

// emptySpare empties the spare file once its records are all in the bbolt
// file: its next records go over them. A failed truncation of a file over
// journalKeep leaves it as large, to be tried after the next commit.
func (j *journal) emptySpare() {
	spare := 1 - j.cur
	j.size[spare] = 0
	if j.phys[spare] > journalKeep && j.files[spare].Truncate(0) == nil {
		j.phys[spare] = 0
	}
}

func (j *journal) close() error {
	var errs []error
	for _, f := range j.files {
		if f != nil {
			errs = append(errs, f.Close())
		}
	}
	return errors.Join(errs...)
}
