// heavy() runs three times the loop light() runs, so it spends three quarters of the time by construction.
// argv[0]: seconds (default 2). Profiled by tests/bpf/test_java_stacks.py, with JFR beside.
public class Split {
    static int spinHeavy(int rounds, int seed) {
        int acc = seed;
        for (int i = 0; i < rounds; i++) acc = (acc * 31 + i) % 1000003;
        return acc;
    }

    static int spinLight(int rounds, int seed) {
        int acc = seed;
        for (int i = 0; i < rounds; i++) acc = (acc * 31 + i) % 1000003;
        return acc;
    }

    static int heavy(int rounds) {
        int acc = 0;
        for (int k = 0; k < 3; k++) acc += spinHeavy(rounds, k);
        return acc;
    }

    static int light(int rounds) {
        return spinLight(rounds, 7);
    }

    public static void main(String[] args) {
        long end = System.nanoTime() + (long) ((args.length > 0 ? Double.parseDouble(args[0]) : 2) * 1e9);
        long total = 0;
        while (System.nanoTime() < end) total += heavy(30000) + light(30000);
        System.out.println(total);
    }
}
