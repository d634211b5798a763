#include "device/file_device.h"

#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>

#include "util/aligned_buffer.h"

namespace strata {
namespace {

constexpr uint32_t kZeroChunkBytes = 1 << 20;

const AlignedBuffer& zero_chunk() {
  static const AlignedBuffer* chunk = new AlignedBuffer(kZeroChunkBytes);  // never freed: shared by all reactors
  return *chunk;
}

// Turns a short transfer into an error: a device that returns fewer bytes than asked is failing.
IoCallback expect_bytes(uint32_t length_bytes, IoCallback done) {
  return [length_bytes, done = std::move(done)](int res) { done(res >= 0 && static_cast<uint32_t>(res) != length_bytes ? -EIO : res); };
}

}  // namespace

FileDevice::~FileDevice() { close(fd_); }

void FileDevice::read(Reactor& reactor, uint64_t offset_bytes, uint32_t length_bytes, void* buffer, IoCallback done) {
  reactor.submit([&](io_uring_sqe* sqe) { io_uring_prep_read(sqe, fd_, buffer, length_bytes, offset_bytes); },
                 expect_bytes(length_bytes, std::move(done)));
}

void FileDevice::write(Reactor& reactor, uint64_t offset_bytes, uint32_t length_bytes, const void* buffer, IoCallback done) {
  reactor.submit([&](io_uring_sqe* sqe) { io_uring_prep_write(sqe, fd_, buffer, length_bytes, offset_bytes); },
                 expect_bytes(length_bytes, std::move(done)));
}

void FileDevice::flush(Reactor& reactor, IoCallback done) {
  reactor.submit([&](io_uring_sqe* sqe) { io_uring_prep_fsync(sqe, fd_, IORING_FSYNC_DATASYNC); }, std::move(done));
}

void FileDevice::write_zeroes(Reactor& reactor, uint64_t offset_bytes, uint64_t length_bytes, IoCallback done) {
  if (description_.kind == DeviceKind::kFile && punch_hole_supported_) {
    // A hole reads as zeros and costs no data writes.
    reactor.submit(
        [&](io_uring_sqe* sqe) {
          io_uring_prep_fallocate(sqe, fd_, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, offset_bytes, length_bytes);
        },
        [this, &reactor, offset_bytes, length_bytes, done = std::move(done)](int res) mutable {
          if (res == -EOPNOTSUPP) {
            punch_hole_supported_ = false;
            write_zero_buffers(reactor, offset_bytes, length_bytes, std::move(done));
            return;
          }
          done(res);
        });
    return;
  }
  write_zero_buffers(reactor, offset_bytes, length_bytes, std::move(done));
}

void FileDevice::write_zero_buffers(Reactor& reactor, uint64_t offset_bytes, uint64_t length_bytes, IoCallback done) {
  struct Pending {
    uint64_t remaining;
    int first_error = 0;
    IoCallback done;
  };
  if (length_bytes == 0) {
    reactor.post([done = std::move(done)] { done(0); });
    return;
  }
  uint64_t chunks = (length_bytes + kZeroChunkBytes - 1) / kZeroChunkBytes;
  auto pending = std::make_shared<Pending>(Pending{chunks, 0, std::move(done)});
  for (uint64_t at = 0; at < length_bytes; at += kZeroChunkBytes) {
    uint32_t n = static_cast<uint32_t>(std::min<uint64_t>(kZeroChunkBytes, length_bytes - at));
    write(reactor, offset_bytes + at, n, zero_chunk().data(), [pending](int res) {
      if (res < 0 && pending->first_error == 0) pending->first_error = res;
      if (--pending->remaining == 0) pending->done(pending->first_error < 0 ? pending->first_error : 0);
    });
  }
}

Status FileDevice::read_sync(uint64_t offset_bytes, size_t length_bytes, void* buffer) {
  size_t done = 0;
  while (done < length_bytes) {
    ssize_t n = pread(fd_, static_cast<uint8_t*>(buffer) + done, length_bytes - done, offset_bytes + done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      return Status(ErrorCode::kIoError, str("reading ", length_bytes, " bytes at offset ", offset_bytes, " of ",
                                             description_.uri, " failed: ", n == 0 ? "end of device" : std::strerror(errno)));
    }
    done += static_cast<size_t>(n);
  }
  return Status();
}

Status FileDevice::write_sync(uint64_t offset_bytes, size_t length_bytes, const void* buffer) {
  size_t done = 0;
  while (done < length_bytes) {
    ssize_t n = pwrite(fd_, static_cast<const uint8_t*>(buffer) + done, length_bytes - done, offset_bytes + done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      return Status(ErrorCode::kIoError, str("writing ", length_bytes, " bytes at offset ", offset_bytes, " of ",
                                             description_.uri, " failed: ", std::strerror(errno)));
    }
    done += static_cast<size_t>(n);
  }
  if (fdatasync(fd_) != 0) {
    return Status(ErrorCode::kIoError, str("fdatasync of ", description_.uri, " failed: ", std::strerror(errno)));
  }
  return Status();
}

Result<uint64_t> FileDevice::refresh_size() {
  struct stat st {};
  if (fstat(fd_, &st) != 0) return Error{ErrorCode::kIoError, str("fstat of ", description_.uri, ": ", std::strerror(errno))};
  uint64_t size = static_cast<uint64_t>(st.st_size);
  if (S_ISBLK(st.st_mode) && ioctl(fd_, BLKGETSIZE64, &size) != 0) {
    return Error{ErrorCode::kIoError, str("BLKGETSIZE64 on ", description_.uri, ": ", std::strerror(errno))};
  }
  size -= size % description_.block_size_bytes;
  description_.size_bytes = size;
  return size;
}

}  // namespace strata
