//! Reading the input and writing the output with fewer page faults, system calls and
//! context switches than `std::fs::read` and a `BufWriter` on stdout: render's
//! whole-process time on a large stream is as much input and output as parsing.

use std::fs::File;
use std::io::{self, IoSlice, Read, Seek, Write};
use std::mem::MaybeUninit;
use std::os::fd::AsFd;
use std::path::Path;

/// Reads a whole file, as `std::fs::read` does, into a buffer backed by huge pages where
/// the kernel has them.
pub fn read_file(path: &Path) -> io::Result<Vec<u8>> {
    read_all(File::open(path)?, false)
}

/// Reads the rest of stdin. A regular file on stdin (`render < FILE`) is read as a file
/// argument is; a pipe as `Read::read_to_end` reads it.
pub fn read_stdin() -> io::Result<Vec<u8>> {
    // A duplicate of the descriptor (sharing its offset): reading through `File` reads
    // with the size known, where `Stdin` would grow a buffer from nothing.
    match io::stdin().as_fd().try_clone_to_owned() {
        Ok(fd) => read_all(File::from(fd), true),
        Err(_) => {
            let mut bytes = Vec::new();
            io::stdin().read_to_end(&mut bytes)?;
            Ok(bytes)
        }
    }
}

/// Reads the rest of `file`; `seeked` when it may not be at its start.
fn read_all(mut file: File, seeked: bool) -> io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    if let Some(size) = remaining_size(&mut file, seeked) {
        bytes.try_reserve_exact(size)?;
        advise_huge_pages(bytes.spare_capacity_mut());
        if size >= PARALLEL_READ_MIN_BYTES {
            let start = file.stream_position()?;
            let filled = read_halves(&file, start, &mut bytes.spare_capacity_mut()[..size])?;
            // SAFETY: `read_halves` initialised exactly the first `filled` bytes.
            unsafe { bytes.set_len(filled) };
            file.seek(io::SeekFrom::Start(start + filled as u64))?;
        }
    }
    // With the capacity reserved this is one `read` of the whole file (and one more that
    // finds the end); a file that grew meanwhile is still read to its end.
    file.read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// From this size on, a file is read in two halves at once: the copy out of the page
/// cache and the faults on the fresh buffer are half of render's serial time otherwise.
const PARALLEL_READ_MIN_BYTES: usize = 8 << 20;

/// Reads `buffer.len()` bytes of `file` from `offset` into `buffer`, its two halves at
/// once; returns how many bytes from the start of `buffer` are now read (fewer when the
/// file ended early, e.g. shrank meanwhile).
fn read_halves(file: &File, offset: u64, buffer: &mut [MaybeUninit<u8>]) -> io::Result<usize> {
    let half = buffer.len() / 2;
    let (first, second) = buffer.split_at_mut(half);
    let halves = vec![(offset, first), (offset + half as u64, second)];
    let mut reads =
        crate::parallel::map(halves, 2, |(at, part)| read_at_fully(file, at, part)).into_iter();
    let (Some(first_read), Some(second_read)) = (reads.next(), reads.next()) else {
        return Ok(0);
    };
    let first_read = first_read?;
    if first_read < half {
        return Ok(first_read);
    }
    Ok(half + second_read?)
}

/// Reads into `buffer` from `offset` until it is full or the file ends; returns how many
/// bytes were read (all initialised, from the start of `buffer`).
fn read_at_fully(file: &File, offset: u64, buffer: &mut [MaybeUninit<u8>]) -> io::Result<usize> {
    use std::os::fd::AsRawFd;
    let mut done = 0;
    while done < buffer.len() {
        let at = libc::off_t::try_from(offset + done as u64)
            .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        let rest = &mut buffer[done..];
        // SAFETY: pread writes at most `rest.len()` bytes into `rest`, memory this
        // function holds exclusively; MaybeUninit<u8> has the layout of u8, and bytes
        // are only counted as initialised once pread reports them written.
        let n = unsafe {
            libc::pread(
                file.as_raw_fd(),
                rest.as_mut_ptr().cast::<libc::c_void>(),
                rest.len(),
                at,
            )
        };
        match usize::try_from(n) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(_) => {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
        }
    }
    Ok(done)
}

/// The bytes left to read of a regular file; `None` for pipes, terminals and the like.
fn remaining_size(file: &mut File, seeked: bool) -> Option<usize> {
    let meta = file.metadata().ok()?;
    if !meta.is_file() {
        return None;
    }
    let position = if seeked {
        file.stream_position().ok()?
    } else {
        0
    };
    usize::try_from(meta.len().saturating_sub(position)).ok()
}

/// Asks the kernel to back the whole 2 MiB pages inside `buffer`, not yet touched, with
/// transparent huge pages. Reading 60 MB into a fresh buffer otherwise takes ~15,000 page
/// faults, each zeroing a 4 KiB page, which cost more than the copy itself; with huge
/// pages the read takes a third of the time (13 ms instead of 45 ms for 60 MB). Where THP
/// is `madvise` (the common default) nothing happens without this advice; where it is
/// `never`, the advice is ignored. The pages are filled by the read at once, so they add
/// nothing to the resident size.
#[cfg(target_os = "linux")]
fn advise_huge_pages(buffer: &mut [MaybeUninit<u8>]) {
    const HUGE_PAGE: usize = 2 << 20;
    // Below this, a buffer spans too few whole huge pages to matter.
    const HUGE_PAGE_MIN_BYTES: usize = 4 << 20;
    if buffer.len() < HUGE_PAGE_MIN_BYTES {
        return;
    }
    let begin = buffer.as_mut_ptr() as usize;
    let start = begin.next_multiple_of(HUGE_PAGE);
    let end = (begin + buffer.len()) / HUGE_PAGE * HUGE_PAGE;
    if end <= start {
        return;
    }
    // SAFETY: [start, end) is page-aligned and lies inside `buffer`, memory this process
    // allocated and that nothing else refers to. MADV_HUGEPAGE only marks the range as
    // eligible for huge pages: it changes neither the contents nor whether the memory is
    // mapped, so no reference anywhere is invalidated. A failure (an old kernel, THP
    // compiled out) leaves ordinary pages, so its result is ignored.
    unsafe {
        libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE);
    }
}

#[cfg(not(target_os = "linux"))]
fn advise_huge_pages(_buffer: &mut [MaybeUninit<u8>]) {}

/// How many slices one `writev` takes at most (IOV_MAX on Linux and the BSDs).
const WRITE_BATCH: usize = 1024;

/// Keeps `value` until the process exits. This and [`write_stdout`] are one contract:
/// render's inputs and output are kept this way, never changed or freed, so that
/// `write_stdout` may hand their pages to a pipe by reference (`vmsplice`) instead of
/// copying them, and the reader still reads them after this process has exited.
pub fn keep_until_exit<T>(value: T) -> &'static T {
    Box::leak(Box::new(value))
}

/// Writes `pieces`, `total` bytes in all, to stdout straight to the descriptor, in
/// batches. Into a pipe (enlarged first) the pages themselves are handed over with
/// `vmsplice`, which saves copying the whole output into the pipe; that is sound only
/// because the pieces are `'static` ([`keep_until_exit`]): nothing can change or free
/// them before the reader has read them. Anything else gets vectored writes.
pub fn write_stdout(pieces: impl Iterator<Item = &'static [u8]>, total: usize) -> io::Result<()> {
    let stdout = io::stdout();
    let mut out = match stdout.as_fd().try_clone_to_owned() {
        Ok(fd) => File::from(fd),
        // No descriptor to spare: through `Stdout`, slice by slice.
        Err(_) => {
            let mut out = io::BufWriter::with_capacity(1 << 16, stdout.lock());
            for piece in pieces {
                out.write_all(piece)?;
            }
            return out.flush();
        }
    };
    let pipe = is_pipe(&out);
    if pipe && total > PIPE_DEFAULT_BYTES {
        grow_pipe(&out);
    }
    let mut batch: Vec<IoSlice<'static>> = Vec::with_capacity(WRITE_BATCH);
    let flush = |out: &mut File, batch: &mut Vec<IoSlice<'static>>| {
        let result = if pipe {
            splice_all(out, batch)
        } else {
            write_all_vectored(out, batch)
        };
        batch.clear();
        result
    };
    for piece in pieces.filter(|p| !p.is_empty()) {
        batch.push(IoSlice::new(piece));
        if batch.len() == WRITE_BATCH {
            flush(&mut out, &mut batch)?;
        }
    }
    flush(&mut out, &mut batch)
}

#[cfg(target_os = "linux")]
fn is_pipe(out: &File) -> bool {
    use std::os::unix::fs::FileTypeExt;
    out.metadata().is_ok_and(|m| m.file_type().is_fifo())
}

#[cfg(not(target_os = "linux"))]
fn is_pipe(_out: &File) -> bool {
    false
}

/// Hands every slice to the pipe `out` with `vmsplice`, resuming after partial transfers
/// and interruptions.
#[cfg(target_os = "linux")]
fn splice_all(out: &mut File, mut slices: &mut [IoSlice<'static>]) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    while !slices.is_empty() {
        // SAFETY: `IoSlice` has the layout of `iovec` on Unix (a documented guarantee),
        // and the slices it describes are `'static`, so the kernel may keep referring to
        // their pages after this call, as vmsplice does: nothing will write to or free
        // them. Without SPLICE_F_GIFT the kernel only reads them.
        let n = unsafe {
            libc::vmsplice(
                out.as_raw_fd(),
                slices.as_ptr().cast::<libc::iovec>(),
                slices.len(),
                0,
            )
        };
        match usize::try_from(n) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut slices, n),
            Err(_) => {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
        }
    }
    Ok(())
}

#[cfg(not(target_os = "linux"))]
fn splice_all(out: &mut File, slices: &mut [IoSlice<'static>]) -> io::Result<()> {
    write_all_vectored(out, slices)
}

/// Writes every slice, resuming after short writes and interruptions.
fn write_all_vectored(out: &mut File, mut slices: &mut [IoSlice<'_>]) -> io::Result<()> {
    while !slices.is_empty() {
        match out.write_vectored(slices) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut slices, n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// A Linux pipe's default capacity.
const PIPE_DEFAULT_BYTES: usize = 64 << 10;
/// Enlarges `out`'s pipe, when it is one, so that the writer and the reader take turns
/// per megabyte rather than per 64 KiB: each turn is a sleep, a wake-up and, on a busy
/// machine, a wait for a CPU.
#[cfg(target_os = "linux")]
fn grow_pipe(out: &File) {
    use std::os::fd::AsRawFd;
    // The largest pipe an unprivileged process may ask for by default
    // (/proc/sys/fs/pipe-max-size).
    const PIPE_BYTES: libc::c_int = 1 << 20;
    // SAFETY: F_SETPIPE_SZ takes an int and touches no memory of this process; on
    // anything but a pipe it fails with EBADF or EINVAL, and a pipe that cannot grow
    // (EPERM over the user's pipe quota, EBUSY) stays as it was, so the result is ignored.
    unsafe {
        libc::fcntl(out.as_raw_fd(), libc::F_SETPIPE_SZ, PIPE_BYTES);
    }
}

#[cfg(not(target_os = "linux"))]
fn grow_pipe(_out: &File) {}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Seek, SeekFrom, Write};

    /// Over the size read in two halves, odd so that the halves differ in length.
    fn large_file() -> (tempfile::NamedTempFile, Vec<u8>) {
        let content: Vec<u8> = (0..PARALLEL_READ_MIN_BYTES + 12_345)
            .map(|i| (i % 251) as u8)
            .collect();
        let mut file = tempfile::NamedTempFile::new().expect("temp file");
        file.write_all(&content).expect("write");
        (file, content)
    }

    #[test]
    fn a_large_file_reads_whole_in_two_halves() {
        let (file, content) = large_file();
        assert!(read_file(file.path()).expect("read") == content);
    }

    #[test]
    fn a_large_file_read_on_from_its_position() {
        let (file, content) = large_file();
        let mut handle = File::open(file.path()).expect("open");
        handle.seek(SeekFrom::Start(1000)).expect("seek");
        assert!(read_all(handle, true).expect("read") == content[1000..]);
    }

    #[test]
    fn a_file_shorter_than_its_size_said_reads_what_is_there() {
        let (file, content) = large_file();
        let handle = File::open(file.path()).expect("open");
        // As if the file had shrunk after its size was taken: the end falls in the second
        // half, then in the first.
        for extra in [4096, 3 * content.len()] {
            let mut buffer = vec![MaybeUninit::new(0u8); content.len() + extra];
            let read = read_halves(&handle, 0, &mut buffer).expect("read");
            assert_eq!(read, content.len());
            let bytes: Vec<u8> = buffer[..read]
                .iter()
                // SAFETY: initialised by the vec! above and by pread.
                .map(|b| unsafe { b.assume_init() })
                .collect();
            assert!(bytes == content);
        }
    }
}
