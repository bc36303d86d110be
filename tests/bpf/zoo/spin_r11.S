/* spin_r11(n): hand-written assembly in the style of OpenSSL's, whose CFA lives in r11 while rsp is
 * realigned. Its CFI is usable only where r11 is known: in the sample's own registers, or in a sigcontext
 * when a signal interrupted it. */
	.text
	.globl	spin_r11
	.type	spin_r11, @function
spin_r11:
	.cfi_startproc
	movq	%rsp, %r11
	.cfi_def_cfa_register r11
	andq	$-64, %rsp
	subq	$64, %rsp
	xorl	%eax, %eax
1:	addq	%rdi, %rax
	movq	%rax, (%rsp)
	decq	%rdi
	jnz	1b
	movq	%r11, %rsp
	.cfi_def_cfa_register rsp
	ret
	.cfi_endproc
	.size	spin_r11, .-spin_r11
	.section	.note.GNU-stack,"",@progbits
