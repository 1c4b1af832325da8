// An outsider's ldc reader, written from docs/LAYOUT.md (layout 2.0) alone: Java 17, standard library only.
//
//   java OutsiderReader.java book GROUP SYMBOL [--owner UID]          one snapshot as a JSON line
//   java OutsiderReader.java spin GROUP SYM[,SYM...] [--owner UID]    read until stdin closes (torture mode)
//
// Spin mode reads the symbols round robin as fast as it can, following replaced files, and takes commands
// on stdin from the harness (tests/outsider/torture.py), each answered with one JSON line:
//   arm PID              start remembering the copy-start time of every read of writer PID accepted live
//   dead PID T_KILL T_DEAD     PID was sent SIGKILL at T_KILL and was dead at T_DEAD (the kernel had cleared
//                              its robust word): count accepted reads whose copy began after T_DEAD (the dead
//                              writer's data), and those that began between the two
//   frozen PID T_STOP MS       PID is SIGSTOPped since T_STOP: count accepted reads after T_STOP + MS
//   stats                counters so far
// It also prints a sample of accepted in-sync books (every SAMPLE_NS) for the harness to check against the
// simulator's truth.
import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.lang.invoke.MethodHandles;
import java.lang.invoke.VarHandle;
import java.nio.ByteOrder;
import java.nio.MappedByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.channels.FileLock;
import java.nio.channels.OverlappingFileLockException;
import java.nio.charset.StandardCharsets;
import java.nio.file.AccessDeniedException;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.time.Instant;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.regex.Pattern;

public final class OutsiderReader {
    static final VarHandle U64 = MethodHandles.byteBufferViewVarHandle(long[].class, ByteOrder.LITTLE_ENDIAN);
    static final VarHandle U32 = MethodHandles.byteBufferViewVarHandle(int[].class, ByteOrder.LITTLE_ENDIAN);
    static final long MAGIC = 0x485450454443444CL;
    static final long MAGIC_SWAPPED = 0x4C44434445505448L;
    static final long ENDIAN = 0x0102030405060708L;
    static final int HEADER = 384;
    static final Pattern GROUP = Pattern.compile("[A-Za-z0-9_-]{1,63}");
    static final long READ_BUDGET_NS = 10_000_000L;   // our bound on one seqlock read (the doc: reader's choice)
    static final long SAMPLE_NS = 20_000_000L;        // one sampled book per 20 ms in spin mode
    // The negative control of the torture (tests/outsider/torture.py --control): a reader that skips
    // section 10's probe must be caught accepting a dead writer's data.
    static final boolean SKIP_PROBE = Boolean.getBoolean("outsider.skipProbe");
    static final int ST_RUNNING = 2, ST_STOPPED = 3, ST_RETIRED = 4;

    /** A refusal with the document's wording; `permanent` false for what retrying may cure. */
    static final class LdcException extends Exception {
        final String kind;
        LdcException(String kind, String msg) { super(msg); this.kind = kind; }
    }

    enum Verdict { ALIVE, STOPPED, RETIRED, DEAD }

    /** One attached segment file (section 7). */
    static final class Segment implements AutoCloseable {
        final String group;
        final Path path;
        final FileChannel ch;
        final MappedByteBuffer buf;
        final long dev, ino;
        final int uid, mode;
        final long fileSize;
        final long headerSize, segmentSize, dirOff, dirEntry, slotsOff, slotSize, capacity, depth;
        final long bidsOff, asksOff, msgOff, msgSize, heartbeatMs, staleAfterMs;
        final int major, minor;
        final long instanceId, startNs;
        final int writerPid, takeovers;
        final String exchange, groupField;
        final Map<String, long[]> cache = new HashMap<>();   // symbol -> {slot, gen}; dropped with the mapping

        Segment(String group, Integer owner) throws LdcException, IOException {
            if (!GROUP.matcher(group).matches())   // step 0, before any open
                throw new LdcException("bad_group", "bad group name " + quote(group) + ": expected [A-Za-z0-9_-]{1,63}");
            this.group = group;
            this.path = Path.of("/dev/shm/ldc-" + group);
            // Java cannot fstat a channel: stat the name before and after the open (NOFOLLOW both times)
            // and require the same (dev, ino), so the attributes checked are those of the file opened.
            Map<String, Object> a1 = statName(path);
            FileChannel c;
            try {
                c = FileChannel.open(path, StandardOpenOption.READ, LinkOption.NOFOLLOW_LINKS);
            } catch (NoSuchFileException e) {
                throw new LdcException("no_segment", "no segment /ldc-" + group + ": the feeder is not running");
            } catch (AccessDeniedException e) {
                throw new LdcException("no_permission", "no permission to read /ldc-" + group + ": join the feeder's group");
            } catch (IOException e) {
                // OpenJDK 17 reports ELOOP (a symbolic link and NOFOLLOW_LINKS) as a plain IOException
                throw new LdcException("refused", "segment /ldc-" + group + " cannot be opened: " + e.getMessage());
            }
            try {
                Map<String, Object> a2 = statName(path);
                if (!a1.get("dev").equals(a2.get("dev")) || !a1.get("ino").equals(a2.get("ino")))
                    throw new LdcException("changed", "segment /ldc-" + group + " was replaced while it was opened");
                dev = ((Number) a1.get("dev")).longValue();
                ino = ((Number) a1.get("ino")).longValue();
                uid = (Integer) a1.get("uid");
                mode = (Integer) a1.get("mode");
                boolean regular = (mode & 0170000) == 0100000;
                if (!regular || (mode & 0022) != 0)
                    throw new LdcException("refused", String.format("segment /ldc-%s has mode 0%o (owner uid %d): a segment must be a regular file writable by its owner alone", group, mode & 07777, uid));
                if (!(owner != null ? uid == owner : trustedByDefault(uid)))
                    throw new LdcException("refused", "segment /ldc-" + group + " belongs to uid " + uid + ", not to a feeders' account this reader trusts");
                fileSize = c.size();   // fstat of the fd itself
                if (fileSize < HEADER)
                    throw new LdcException("refused", "segment /ldc-" + group + " is " + fileSize + " bytes: not a segment (header is 384)");
                if (fileSize > Integer.MAX_VALUE)
                    throw new LdcException("refused", "segment /ldc-" + group + " is " + fileSize + " bytes: larger than one Java mapping");
                buf = c.map(FileChannel.MapMode.READ_ONLY, 0, fileSize);
                ch = c;
                long m = (long) U64.getAcquire(buf, 0);
                if (m == 0) throw new LdcException("not_initialised", "segment /ldc-" + group + " is not initialised (magic 0)");
                if (m == MAGIC_SWAPPED) throw new LdcException("refused", "little-endian segment, this reader decodes big-endian");
                if (m != MAGIC) throw new LdcException("refused", String.format("segment /ldc-%s is not an ldc segment (magic 0x%016x)", group, m));
                major = buf.order(ByteOrder.LITTLE_ENDIAN).getShort(8) & 0xFFFF;
                minor = buf.getShort(10) & 0xFFFF;
                if (major != 2) throw new LdcException("refused", "segment /ldc-" + group + " has layout version " + major + "." + minor + ", this reader understands 2.0");
                long em = buf.getLong(16);
                if (em != ENDIAN) throw new LdcException("refused", String.format("segment /ldc-%s has endian marker 0x%016x, expected 0x0102030405060708", group, em));
                headerSize = u32(12); segmentSize = buf.getLong(24); dirOff = u32(32); dirEntry = u32(36);
                slotsOff = u32(40); slotSize = u32(44); capacity = u32(48); depth = u32(52);
                bidsOff = u32(56); asksOff = u32(60); msgOff = u32(64); msgSize = u32(68);
                heartbeatMs = u32(72); staleAfterMs = u32(76);
                checkGeometry();
                exchange = cstring(80, 32);
                writerPid = buf.getInt(128);
                startNs = buf.getLong(136);
                instanceId = buf.getLong(144);
                takeovers = buf.getInt(168);
                groupField = cstring(176, 64);
                if (!groupField.equals(group))   // step 8: another group's file at this name (a hard link)
                    throw new LdcException("refused", "segment /ldc-" + group + " holds group " + quote(groupField) + ": a segment of another group at this name");
            } catch (LdcException | IOException | RuntimeException e) {
                c.close();
                throw e;
            }
        }

        /** Section 7 step 2 without an explicit owner: root, our own user, the account "ldc". */
        static boolean trustedByDefault(int uid) throws IOException {
            int me = (Integer) Files.getAttribute(Path.of("/proc/self"), "unix:uid");   // /proc/self belongs to our euid
            if (uid == 0 || uid == me) return true;
            for (String line : Files.readAllLines(Path.of("/etc/passwd"))) {
                String[] f = line.split(":");
                if (f.length > 2 && f[0].equals("ldc")) return Integer.parseInt(f[2]) == uid;
            }
            return false;
        }

        static Map<String, Object> statName(Path p) throws LdcException, IOException {
            try {
                return Files.readAttributes(p, "unix:dev,ino,uid,mode", LinkOption.NOFOLLOW_LINKS);
            } catch (NoSuchFileException e) {
                throw new LdcException("no_segment", "no segment " + p + ": the feeder is not running");
            }
        }

        long u32(int off) { return buf.getInt(off) & 0xFFFFFFFFL; }

        String cstring(long off, int max) {
            byte[] b = new byte[max];
            buf.get((int) off, b);
            int n = 0;
            while (n < max && b[n] != 0) n++;
            return new String(b, 0, n, StandardCharsets.UTF_8);
        }

        void rule(int n, boolean ok, String text, String values) throws LdcException {
            if (!ok) throw new LdcException("refused", "segment /ldc-" + group + " has bad geometry: " + text + " fails (" + values + ") [rule " + n + "]");
        }

        // Section 7 rules 1-17, in order; every value is a widened u32 or a u64 < 2^63 here, and the
        // products stay below 2^63 (u32 * u32), so Java's signed long does the 64-bit unsigned arithmetic.
        void checkGeometry() throws LdcException {
            if (segmentSize < 0) throw new LdcException("refused", "segment /ldc-" + group + " has bad geometry: segment_size <= file_size fails (segment_size " + Long.toUnsignedString(segmentSize) + ")");
            rule(1, headerSize >= 384, "header_size >= 384", "header_size " + headerSize);
            rule(2, dirEntry >= 64, "directory_entry_size >= 64", "directory_entry_size " + dirEntry);
            rule(3, dirOff >= headerSize, "directory_offset >= header_size", "directory_offset " + dirOff + ", header_size " + headerSize);
            rule(4, dirOff % 8 == 0 && dirEntry % 8 == 0, "directory_offset and directory_entry_size multiples of 8", dirOff + ", " + dirEntry);
            rule(5, capacity >= 1, "1 <= capacity", "capacity " + capacity);
            rule(6, dirOff + capacity * dirEntry <= slotsOff, "directory_offset + capacity * directory_entry_size <= slots_offset", dirOff + ", " + capacity + ", " + dirEntry + ", " + slotsOff);
            rule(7, slotsOff % 128 == 0, "slots_offset multiple of 128", "slots_offset " + slotsOff);
            rule(8, slotSize % 128 == 0 && slotSize > 0, "slot_size multiple of 128", "slot_size " + slotSize);
            rule(9, depth >= 1, "1 <= depth", "depth " + depth);
            rule(10, bidsOff >= 128, "bids_offset >= 128", "bids_offset " + bidsOff);
            rule(11, bidsOff % 8 == 0 && asksOff % 8 == 0, "bids_offset and asks_offset multiples of 8", bidsOff + ", " + asksOff);
            rule(12, asksOff >= bidsOff + 16 * depth, "asks_offset >= bids_offset + 16 * depth", asksOff + ", " + bidsOff + ", " + depth);
            rule(13, msgOff >= asksOff + 16 * depth, "message_offset >= asks_offset + 16 * depth", msgOff + ", " + asksOff + ", " + depth);
            rule(14, msgSize >= 1, "1 <= message_size", "message_size " + msgSize);
            rule(15, msgOff + msgSize <= slotSize, "message_offset + message_size <= slot_size", msgOff + ", " + msgSize + ", " + slotSize);
            rule(16, slotsOff + capacity * slotSize <= segmentSize, "slots_offset + capacity * slot_size <= segment_size", slotsOff + ", " + capacity + ", " + slotSize + ", " + segmentSize);
            rule(17, segmentSize <= fileSize, "segment_size <= file_size", segmentSize + ", " + fileSize);
        }

        /** Section 10's probe; the lock half by a shared fcntl lock tried and released at once (section 15). */
        synchronized Verdict probe() {
            if (SKIP_PROBE) return Verdict.ALIVE;
            int st = (int) U32.getAcquire(buf, 132);
            if (st == ST_STOPPED) return Verdict.STOPPED;
            if (st == ST_RETIRED) return Verdict.RETIRED;
            try {
                FileLock l = ch.tryLock(0, Long.MAX_VALUE, true);
                if (l != null) { l.release(); return Verdict.DEAD; }
            } catch (IOException | OverlappingFileLockException e) {
                return Verdict.DEAD;   // never ALIVE on an error
            }
            if (((int) U32.getAcquire(buf, 320) & 0x3FFFFFFF) == 0) return Verdict.DEAD;
            st = (int) U32.getAcquire(buf, 132);
            return st == ST_RUNNING ? Verdict.ALIVE : st == ST_STOPPED ? Verdict.STOPPED : st == ST_RETIRED ? Verdict.RETIRED : Verdict.DEAD;
        }

        /** Section 9: a consistent directory copy, then the symbol's (slot, gen), or null. */
        long[] find(String symbol) throws LdcException {
            int n = (int) (capacity * dirEntry);
            byte[] entries = new byte[n];
            long start = System.nanoTime();
            for (int attempt = 0; ; attempt++) {
                long d1 = (long) U64.getAcquire(buf, 160);
                if ((d1 & 1) == 0) {
                    buf.get((int) dirOff, entries);
                    VarHandle.acquireFence();
                    long d2 = (long) U64.getOpaque(buf, 160);
                    if (d1 == d2) break;
                } else Thread.onSpinWait();
                if (attempt >= 64 && System.nanoTime() - start > READ_BUDGET_NS)
                    throw new LdcException("gave_up", "directory of /ldc-" + group + " never consistent within 10 ms");
            }
            byte[] want = symbol.getBytes(StandardCharsets.UTF_8);
            for (int i = 0; i < capacity; i++) {
                int e = (int) (i * dirEntry);
                long gen = java.nio.ByteBuffer.wrap(entries, e + 40, 8).order(ByteOrder.LITTLE_ENDIAN).getLong();
                if (gen == 0) continue;
                int len = 0;
                while (len < 40 && entries[e + len] != 0) len++;
                if (len == want.length && java.util.Arrays.equals(entries, e, e + len, want, 0, len))
                    return new long[] {i, gen};
            }
            return null;
        }

        /** Section 8: a consistent copy of slot `slot`, or null when the budget ran out. */
        Copy copy(long slot) {
            int p = (int) (slotsOff + slot * slotSize);
            long start = System.nanoTime();
            for (int attempt = 1; ; attempt++) {
                long s1 = (long) U64.getAcquire(buf, p);
                if ((s1 & 1) == 0) {
                    Copy c = new Copy();
                    c.gen = buf.getLong(p + 8);
                    c.updateId = buf.getLong(p + 16);
                    c.eventMs = buf.getLong(p + 24);
                    c.publishNs = buf.getLong(p + 40);
                    c.status = buf.getInt(p + 48);
                    int nb = (int) Math.min(buf.getInt(p + 52) & 0xFFFFFFFFL, depth);
                    int na = (int) Math.min(buf.getInt(p + 56) & 0xFFFFFFFFL, depth);
                    c.bids = new double[2 * nb];
                    c.asks = new double[2 * na];
                    for (int k = 0; k < 2 * nb; k++) c.bids[k] = buf.getDouble((int) (p + bidsOff + 8L * k));
                    for (int k = 0; k < 2 * na; k++) c.asks[k] = buf.getDouble((int) (p + asksOff + 8L * k));
                    byte[] msg = new byte[(int) msgSize];
                    buf.get((int) (p + msgOff), msg);
                    VarHandle.acquireFence();
                    long s2 = (long) U64.getOpaque(buf, p);
                    if (s1 == s2) {
                        int len = 0;
                        while (len < msg.length && msg[len] != 0) len++;
                        c.message = new String(msg, 0, len, StandardCharsets.UTF_8);
                        return c;
                    }
                } else Thread.onSpinWait();
                if (attempt % 256 == 0 && System.nanoTime() - start > READ_BUDGET_NS) return null;
            }
        }

        long heartbeatNs() { return (long) U64.getOpaque(buf, 152); }

        /** Section 10, "A replaced segment", step 1: (dev, ino) of the name against ours. */
        boolean replacedAtName() {
            try {
                Map<String, Object> a = Files.readAttributes(path, "unix:dev,ino", LinkOption.NOFOLLOW_LINKS);
                return ((Number) a.get("dev")).longValue() != dev || ((Number) a.get("ino")).longValue() != ino;
            } catch (IOException e) {
                return false;   // missing: not replaced
            }
        }

        @Override public void close() throws IOException { ch.close(); }
    }

    static final class Copy {
        long gen, updateId, eventMs, publishNs;
        int status;
        double[] bids, asks;
        String message;
    }

    /** One read's outcome, as the caller sees it. */
    static final class Result {
        String outcome;   // "ok" (live, in sync), "out_of_sync", "stale" (writer not alive), "not_found", "gave_up", "contention"
        Copy copy;
        int status;
        long t0;          // CLOCK_REALTIME ns before the copy began
        Segment seg;
    }

    /** A reader of one group that follows replaced files (section 10). */
    static final class Reader {
        final String group;
        final Integer owner;
        Segment seg;
        long reattaches;

        Reader(String group, Integer owner) throws LdcException, IOException {
            this.group = group;
            this.owner = owner;
            this.seg = new Segment(group, owner);
        }

        /** Section 10, "A replaced segment", steps 1-3. True when now on a new file. */
        boolean follow() {
            if (!seg.replacedAtName()) return false;
            Segment fresh;
            try {
                fresh = new Segment(group, owner);
            } catch (LdcException | IOException e) {
                return false;   // keep the old mapping, try again at the next read
            }
            try { seg.close(); } catch (IOException e) { /* nothing to do */ }
            seg = fresh;   // a new Segment has an empty cache
            reattaches++;
            return true;
        }

        Result read(String symbol) throws LdcException {
            for (int round = 0; round < 3; round++) {
                Result r = readOnce(symbol);
                if (r != null) return r;
            }
            Result r = new Result();
            r.outcome = "not_found";
            return r;
        }

        /** null: read again (gen mismatch or a replaced file followed). */
        Result readOnce(String symbol) throws LdcException {
            Segment s = seg;
            Result r = new Result();
            r.seg = s;
            long[] sg = s.cache.get(symbol);
            if (sg == null) {
                sg = s.find(symbol);
                if (sg == null) {
                    if (s.probe() != Verdict.ALIVE && follow()) return null;
                    r.outcome = "not_found";
                    return r;
                }
                s.cache.put(symbol, sg);
            }
            r.t0 = nowNs();
            Copy c = s.copy(sg[0]);
            if (c == null) {   // the give-up path checks for a replacement too
                if (s.probe() == Verdict.ALIVE) { r.outcome = "contention"; return r; }
                if (follow()) return null;
                r.outcome = "gave_up";
                return r;
            }
            r.copy = c;
            if (c.gen != sg[1]) { s.cache.remove(symbol); return null; }   // 1. generation
            Verdict v = s.probe();                                          // 2. liveness
            r.status = c.status;
            if (v != Verdict.ALIVE) {
                if (follow()) return null;
                r.status |= 0x02;
                r.outcome = "stale";
                return r;
            }
            if (nowNs() - s.heartbeatNs() > s.staleAfterMs * 1_000_000L) r.status |= 0x02;   // 3. staleness
            r.outcome = (r.status & 0x3F) == 0x01 ? "ok" : "out_of_sync";                 // 4. status
            return r;
        }
    }

    static long nowNs() {
        Instant t = Instant.now();
        return t.getEpochSecond() * 1_000_000_000L + t.getNano();
    }

    static String quote(String s) {
        StringBuilder b = new StringBuilder("\"");
        for (char ch : s.toCharArray()) {
            if (ch == '"' || ch == '\\') b.append('\\').append(ch);
            else if (ch < 0x20) b.append(String.format("\\u%04x", (int) ch));
            else b.append(ch);
        }
        return b.append('"').toString();
    }

    static String levels(double[] lv) {
        StringBuilder b = new StringBuilder("[");
        for (int k = 0; k < lv.length; k += 2) {
            if (k > 0) b.append(',');
            b.append('[').append(Double.toString(lv[k])).append(',').append(Double.toString(lv[k + 1])).append(']');
        }
        return b.append(']').toString();
    }

    static String bookJson(String ev, String symbol, Result r) {
        Segment s = r.seg;
        Copy c = r.copy;
        return "{\"ev\":" + quote(ev) + ",\"outcome\":" + quote(r.outcome) + ",\"symbol\":" + quote(symbol)
            + ",\"exchange\":" + quote(s.exchange) + ",\"group\":" + quote(s.groupField)
            + ",\"version\":\"" + s.major + "." + s.minor + "\",\"depth\":" + s.depth + ",\"capacity\":" + s.capacity
            + ",\"writer_pid\":" + s.writerPid + ",\"instance_id\":\"" + Long.toUnsignedString(s.instanceId) + "\""
            + ",\"takeovers\":" + s.takeovers + ",\"stale_after_ms\":" + s.staleAfterMs + ",\"heartbeat_interval_ms\":" + s.heartbeatMs
            + ",\"owner_uid\":" + s.uid + ",\"mode\":\"0" + Integer.toOctalString(s.mode & 07777) + "\""
            + ",\"t0\":" + r.t0 + ",\"status\":" + r.status
            + (c == null ? "" : ",\"update_id\":" + c.updateId + ",\"publish_time_ns\":" + c.publishNs
               + ",\"message\":" + quote(c.message) + ",\"bids\":" + levels(c.bids) + ",\"asks\":" + levels(c.asks))
            + "}";
    }

    /** --owner UID, else $LDC_FEEDER_USER (a uid here), else null: the default set. */
    static Integer ownerArg(String[] args) {
        for (int i = 0; i + 1 < args.length; i++) if (args[i].equals("--owner")) return Integer.valueOf(args[i + 1]);
        String env = System.getenv("LDC_FEEDER_USER");
        return env == null || env.isEmpty() ? null : Integer.valueOf(env);
    }

    static int book(String group, String symbol, Integer owner) throws IOException {
        try {
            Reader rd = new Reader(group, owner);
            Result r = rd.read(symbol);
            if (r.copy == null) {
                System.out.println("{\"ev\":\"book\",\"outcome\":" + quote(r.outcome) + ",\"symbol\":" + quote(symbol) + "}");
                return 1;
            }
            System.out.println(bookJson("book", symbol, r));
            return r.outcome.equals("ok") ? 0 : 1;
        } catch (LdcException e) {
            System.out.println("{\"ev\":\"error\",\"kind\":" + quote(e.kind) + ",\"message\":" + quote(e.getMessage()) + "}");
            return 2;
        }
    }

    // ---- spin mode: the torture harness's counters ----
    static final Object LOCK = new Object();
    static final Map<Integer, List<Long>> armed = new HashMap<>();   // pid -> copy-start times of accepted reads
    static final Map<String, Long> counts = new HashMap<>();

    static void count(String k) { synchronized (LOCK) { counts.merge(k, 1L, Long::sum); } }

    static void control() {
        try (BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8))) {
            String line;
            while ((line = in.readLine()) != null) {
                String[] w = line.trim().split("\\s+");
                synchronized (LOCK) {
                    switch (w[0]) {
                        case "arm" -> {
                            armed.put(Integer.valueOf(w[1]), new ArrayList<>());
                            System.out.println("{\"ev\":\"armed\",\"pid\":" + w[1] + "}");
                        }
                        case "dead", "frozen" -> {
                            // dead PID T_SIGNAL T_DEAD; frozen PID T_SIGSTOP STALE_AFTER_MS
                            int pid = Integer.parseInt(w[1]);
                            long signal = Long.parseLong(w[2]);
                            long after = w[0].equals("dead") ? Long.parseLong(w[3]) : signal + Long.parseLong(w[3]) * 1_000_000L;
                            List<Long> ts = armed.remove(pid);
                            long bad = 0, racing = 0, total = ts == null ? 0 : ts.size();
                            if (ts != null) for (long t : ts) { if (t > after) bad++; else if (t > signal) racing++; }
                            System.out.println("{\"ev\":\"" + w[0] + "\",\"pid\":" + pid + ",\"accepted_after\":" + bad
                                + ",\"accepted_after_signal\":" + racing + ",\"accepted_armed\":" + total + "}");
                        }
                        case "stats" -> {
                            StringBuilder b = new StringBuilder("{\"ev\":\"stats\"");
                            for (Map.Entry<String, Long> e : counts.entrySet()) b.append(",").append(quote(e.getKey())).append(":").append(e.getValue());
                            System.out.println(b.append("}"));
                        }
                        default -> System.out.println("{\"ev\":\"error\",\"message\":" + quote("unknown command " + line) + "}");
                    }
                }
                System.out.flush();
            }
        } catch (IOException e) { /* stdin gone: stop */ }
        synchronized (LOCK) { stop = true; }
    }

    static volatile boolean stop;

    static int spin(String group, String[] symbols, Integer owner) throws Exception {
        Thread t = new Thread(OutsiderReader::control, "control");
        t.setDaemon(true);
        t.start();
        Reader rd = null;
        long lastSample = 0;
        while (!stop) {
            if (rd == null) {
                try { rd = new Reader(group, owner); }
                catch (LdcException e) { count("attach_" + e.kind); Thread.sleep(1); continue; }
            }
            for (String sym : symbols) {
                Result r;
                try { r = rd.read(sym); }
                catch (LdcException e) { count("read_" + e.kind); continue; }
                count(r.outcome);
                if (!r.outcome.equals("ok")) continue;
                synchronized (LOCK) {
                    List<Long> ts = armed.get(r.seg.writerPid);
                    if (ts != null) ts.add(r.t0);
                }
                long now = System.nanoTime();
                if (now - lastSample > SAMPLE_NS) {
                    lastSample = now;
                    System.out.println(bookJson("sample", sym, r));
                }
            }
            if (rd != null) synchronized (LOCK) { counts.put("reattaches", rd.reattaches); }
        }
        return 0;
    }

    public static void main(String[] args) throws Exception {
        if (args.length < 3) {
            System.err.println("usage: OutsiderReader (book GROUP SYMBOL | spin GROUP SYM[,SYM]) [--owner UID]");
            System.exit(2);
        }
        Integer owner = ownerArg(args);
        int rc = switch (args[0]) {
            case "book" -> book(args[1], args[2], owner);
            case "spin" -> spin(args[1], args[2].split(","), owner);
            default -> 2;
        };
        System.exit(rc);
    }
}
