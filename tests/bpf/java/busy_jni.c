/* Busy.spin: native work a Java method calls through JNI (tests/bpf/test_java_stacks.py). */
#include <jni.h>

__attribute__((noinline)) static int mix(int rounds)
{
	volatile int acc = 0;
	for (int i = 0; i < rounds; i++)
		acc = (acc * 7 + i) % 1009;
	return acc;
}

JNIEXPORT jint JNICALL Java_Busy_spin(JNIEnv *env, jclass cls, jint rounds)
{
	(void)env;
	(void)cls;
	return mix(rounds);
}
