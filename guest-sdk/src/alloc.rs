//! The allocator of a plugin's instance (the crate feature `call-allocator`, on by
//! default).
//!
//! Every call of a plugin runs in a fresh instance whose memory is thrown away when the
//! call ends: memory never has to be given back, and nothing lives long enough to
//! fragment it. A batch of a thousand entries still makes tens of thousands of small
//! strings and vectors, and the standard allocator of `wasm32-wasip2` (dlmalloc, which
//! splits and coalesces blocks) spent a fifth of a Rust plugin's call on them. This one
//! keeps small blocks (up to 2 KiB) in power-of-two size classes, each class carved
//! from chunks of its own (4 KiB, growing to 64 KiB) and its freed blocks on a list: taking and giving back
//! a block is a few instructions. Larger blocks go to the standard allocator.
//!
//! A plugin that brings an allocator of its own turns the feature off
//! (`abacsync-guest = { version = "0.3", default-features = false }`).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::UnsafeCell;
use std::ptr;

/// The smallest class: 16 bytes, which holds the free list's link on any target.
const MIN_SHIFT: u32 = 4;
/// Classes of 16, 32, …, 2048 bytes.
const CLASSES: usize = 8;
const LARGEST: usize = 1 << (MIN_SHIFT as usize + CLASSES - 1);
/// Each class takes memory from the standard allocator in chunks of 4 KiB at first,
/// each twice the last, up to 64 KiB: a call that maps one entry touches little memory
/// (which the host clears after each call), a batch takes few chunks.
const FIRST_CHUNK: usize = 4 * 1024;
const LAST_CHUNK: usize = 64 * 1024;

/// Small blocks in size classes, larger ones from [`System`]; see the module's comment.
/// Not for threads: the crate installs it only in a plugin's instance.
pub(crate) struct CallAllocator(UnsafeCell<Classes>);

struct Classes {
    /// The first free block of each class; each free block holds the next one.
    free: [*mut u8; CLASSES],
    /// Where each class's current chunk has room, and where it ends.
    next: [*mut u8; CLASSES],
    end: [*mut u8; CLASSES],
    /// The size of each class's next chunk.
    chunk: [usize; CLASSES],
}

// SAFETY: a plugin's instance runs one thread (WebAssembly components have no
// threads), which is the only place this allocator is installed; tests use their own
// value from one thread.
unsafe impl Sync for CallAllocator {}

impl CallAllocator {
    /// An allocator with no memory yet.
    pub(crate) const fn new() -> Self {
        Self(UnsafeCell::new(Classes {
            free: [ptr::null_mut(); CLASSES],
            next: [ptr::null_mut(); CLASSES],
            end: [ptr::null_mut(); CLASSES],
            chunk: [FIRST_CHUNK; CLASSES],
        }))
    }
}

/// The class of `layout`, `None` when it is larger than the largest. A block of a class
/// is as large as the class and aligned to its size (chunks are aligned to the largest
/// class), so it meets any alignment up to its size.
fn class_of(layout: Layout) -> Option<usize> {
    let size = layout.size().max(layout.align());
    if size > LARGEST {
        return None;
    }
    let shift = size
        .max(1 << MIN_SHIFT)
        .next_power_of_two()
        .trailing_zeros();
    Some((shift - MIN_SHIFT) as usize)
}

unsafe impl GlobalAlloc for CallAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let Some(class) = class_of(layout) else {
            // SAFETY: the caller's contract, passed on.
            return unsafe { System.alloc(layout) };
        };
        // SAFETY: one thread (see `Sync`), and nothing here allocates through `self`.
        let classes = unsafe { &mut *self.0.get() };
        let head = classes.free[class];
        if !head.is_null() {
            // SAFETY: a free block holds the next free block of its class.
            classes.free[class] = unsafe { head.cast::<*mut u8>().read() };
            return head;
        }
        let size = 1usize << (class as u32 + MIN_SHIFT);
        if classes.next[class] == classes.end[class] {
            let size = classes.chunk[class];
            // SAFETY: chunk sizes and LARGEST are non-zero powers of two.
            let chunk = unsafe { System.alloc(Layout::from_size_align_unchecked(size, LARGEST)) };
            if chunk.is_null() {
                return chunk;
            }
            classes.next[class] = chunk;
            // SAFETY: within the chunk just allocated (one past its end).
            classes.end[class] = unsafe { chunk.add(size) };
            classes.chunk[class] = (size * 2).min(LAST_CHUNK);
        }
        let block = classes.next[class];
        // SAFETY: chunk sizes are multiples of every class's size, so the block is inside.
        classes.next[class] = unsafe { block.add(size) };
        block
    }

    unsafe fn dealloc(&self, block: *mut u8, layout: Layout) {
        let Some(class) = class_of(layout) else {
            // SAFETY: the caller's contract: `block` came from `alloc` with `layout`,
            // which passed it to `System`.
            return unsafe { System.dealloc(block, layout) };
        };
        // SAFETY: one thread (see `Sync`).
        let classes = unsafe { &mut *self.0.get() };
        // SAFETY: the block is at least 16 bytes and aligned to its size.
        unsafe { block.cast::<*mut u8>().write(classes.free[class]) };
        classes.free[class] = block;
    }

    unsafe fn realloc(&self, block: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller's contract: `new_size` rounded to the alignment fits isize.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        match (class_of(layout), class_of(new_layout)) {
            // The block already has room.
            (Some(old), Some(new)) if old == new => block,
            // SAFETY: both with `System`, under the caller's contract.
            (None, None) => unsafe { System.realloc(block, layout, new_size) },
            _ => {
                // SAFETY: the caller's contract, and the copy stays inside both blocks.
                unsafe {
                    let moved = self.alloc(new_layout);
                    if !moved.is_null() {
                        ptr::copy_nonoverlapping(block, moved, layout.size().min(new_size));
                        self.dealloc(block, layout);
                    }
                    moved
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_fall_in_classes_that_meet_their_alignment() {
        let layout = |size, align| Layout::from_size_align(size, align).expect("layout");
        assert_eq!(class_of(layout(1, 1)), Some(0));
        assert_eq!(class_of(layout(16, 8)), Some(0));
        assert_eq!(class_of(layout(17, 1)), Some(1));
        assert_eq!(
            class_of(layout(8, 64)),
            Some(2),
            "aligned to 64: a 64-byte block"
        );
        assert_eq!(class_of(layout(2048, 1)), Some(CLASSES - 1));
        assert_eq!(class_of(layout(2049, 1)), None);
    }

    #[test]
    fn blocks_are_aligned_distinct_reused_and_kept_by_realloc() {
        let allocator = CallAllocator::new();
        let small = Layout::from_size_align(24, 8).expect("layout");
        unsafe {
            let blocks: Vec<*mut u8> = (0..5000).map(|_| allocator.alloc(small)).collect();
            for (index, block) in blocks.iter().enumerate() {
                assert_eq!(*block as usize % 32, 0, "a 32-byte class is aligned to 32");
                block.write_bytes(index as u8, 24);
            }
            let mut sorted = blocks.clone();
            sorted.sort();
            sorted.dedup();
            assert_eq!(sorted.len(), blocks.len(), "no block is handed out twice");
            for (index, block) in blocks.iter().enumerate() {
                assert_eq!(block.add(23).read(), index as u8, "blocks do not overlap");
            }
            allocator.dealloc(blocks[7], small);
            assert_eq!(allocator.alloc(small), blocks[7], "a freed block is reused");
            // Growing within the class keeps the block; beyond it moves it, contents kept.
            assert_eq!(allocator.realloc(blocks[0], small, 32), blocks[0]);
            let moved = allocator.realloc(blocks[1], small, 100);
            assert_ne!(moved, blocks[1]);
            assert_eq!(moved.read(), 1);
            assert_eq!(moved.add(23).read(), 1);
            // Large blocks go to the standard allocator, and may grow there.
            let large = Layout::from_size_align(10_000, 8).expect("layout");
            let big = allocator.alloc(large);
            big.write_bytes(9, 10_000);
            let bigger = allocator.realloc(big, large, 20_000);
            assert_eq!(bigger.add(9_999).read(), 9);
            allocator.dealloc(bigger, Layout::from_size_align(20_000, 8).expect("layout"));
        }
    }
}
