import java.util.function.IntUnaryOperator;

// main -> run -> Cart.total (an instance method) -> a lambda -> Pricing.price x3 (recursive) -> Pricing.hot,
// which spends its time in a loop C2 compiles and in spin, a JNI function of libbusy.so; Cold.step stays
// interpreted (excluded from compilation by the test's command line). argv[0]: seconds (default 2).
// Profiled by tests/bpf/test_java_stacks.py; `// calls: f` marks the line a method shows while f runs.
public class Busy {
    static native int spin(int rounds);

    static final class Pricing {
        static int hot(int rounds) {
            int acc = 0;
            for (int i = 0; i < rounds; i++) acc = (acc * 31 + i) % 1000003; // calls: loop
            return acc + spin(rounds / 8); // calls: spin
        }

        static int price(int depth, int rounds) {
            if (depth <= 1) return hot(rounds); // calls: hot
            return price(depth - 1, rounds); // calls: price
        }
    }

    static final class Cold {
        static int step(IntUnaryOperator line, int rounds) {
            return line.applyAsInt(rounds); // calls: lambda
        }
    }

    static final class Cart {
        private final IntUnaryOperator line = rounds -> Pricing.price(3, rounds); // calls: price-first

        int total(int rounds) {
            return Cold.step(line, rounds); // calls: step
        }
    }

    static long run(double seconds) {
        Cart cart = new Cart();
        long end = System.nanoTime() + (long) (seconds * 1e9);
        long acc = 0;
        while (System.nanoTime() < end) acc += cart.total(20000); // calls: total
        return acc;
    }

    public static void main(String[] args) {
        System.load(System.getProperty("busy.lib"));
        System.out.println(run(args.length > 0 ? Double.parseDouble(args[0]) : 2)); // calls: run
    }
}
