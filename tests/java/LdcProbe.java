// The liveness probe of docs/LAYOUT.md section 10 with nothing but Java 17's standard library, as its
// section 15 tells a Java reader to do it (tests/test_shm_java.py).
//
//   java LdcProbe GROUP          prints ALIVE, STOPPED, RETIRED or DEAD
//   java LdcProbe GROUP hold     takes the shared lock a probe takes when no writer holds the
//                                file, prints "held" and keeps it until killed
import java.lang.invoke.MethodHandles;
import java.lang.invoke.VarHandle;
import java.nio.ByteOrder;
import java.nio.MappedByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.channels.FileLock;
import java.nio.file.LinkOption;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;

public class LdcProbe {
    static final int STATE = 132, WRITER_LOCK = 320, TID_MASK = 0x3FFFFFFF;
    static final VarHandle U32 = MethodHandles.byteBufferViewVarHandle(int[].class, ByteOrder.LITTLE_ENDIAN);

    public static void main(String[] args) throws Exception {
        Path path = Path.of("/dev/shm/ldc-" + args[0]);
        try (FileChannel ch = FileChannel.open(path, StandardOpenOption.READ, LinkOption.NOFOLLOW_LINKS)) {
            MappedByteBuffer m = ch.map(FileChannel.MapMode.READ_ONLY, 0, ch.size());
            if (args.length > 1 && args[1].equals("hold")) {
                FileLock held = ch.tryLock(0, Long.MAX_VALUE, true);
                System.out.println(held == null ? "busy" : "held");
                System.out.flush();
                Thread.sleep(600_000);
                return;
            }
            System.out.println(probe(ch, m));
        }
    }

    static String probe(FileChannel ch, MappedByteBuffer m) throws Exception {
        int state = (int) U32.getAcquire(m, STATE);
        if (state == 3) return "STOPPED";
        if (state == 4) return "RETIRED";
        FileLock lock = ch.tryLock(0, Long.MAX_VALUE, true); // null while the writer holds its write lock
        if (lock != null) {
            lock.release(); // at once
            return "DEAD";
        }
        if (((int) U32.getAcquire(m, WRITER_LOCK) & TID_MASK) == 0) return "DEAD";
        state = (int) U32.getAcquire(m, STATE);
        return state == 2 ? "ALIVE" : state == 3 ? "STOPPED" : state == 4 ? "RETIRED" : "DEAD";
    }
}
