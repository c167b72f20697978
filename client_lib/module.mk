# client_lib: libshiftadd, the client library. Uses proto/ only (never engine/kernels/daemon).
# Built as a static archive (unit tests) and as libshiftadd.so.1 with -fvisibility=hidden and
# a version script that exports shiftadd_* only.
SHIFTADD_VERSION := 0.1.0
client_lib_SRCS := $(wildcard client_lib/*.c)
$(eval $(call add_lib,client_lib))
$(client_lib_OBJS): ISA_FLAGS += -fvisibility=hidden
$(client_lib_OBJS): | $(PROTO_GEN_H)

CLIENT_LDLIBS := $(PROTO_LDLIBS) -lpthread
LIBSHIFTADD := $(B)/lib/libshiftadd.so.1
$(LIBSHIFTADD): $(client_lib_OBJS) $(proto_OBJS) client_lib/libshiftadd.map
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(ALL_LDFLAGS) -shared -Wl,-soname,libshiftadd.so.1 \
		-Wl,--version-script=client_lib/libshiftadd.map -Wl,--no-undefined \
		-o $@ $(client_lib_OBJS) $(proto_OBJS) $(CLIENT_LDLIBS)
	$(Q)ln -sf libshiftadd.so.1 $(B)/lib/libshiftadd.so

# The pkg-config file for the install locations (the top Makefile's PREFIX, LIBDIR, ...).
SHIFTADD_PC_SED = sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@LIBDIR@|$(LIBDIR)|' \
		  -e 's|@INCLUDEDIR@|$(INCLUDEDIR)|' -e 's|@VERSION@|$(SHIFTADD_VERSION)|'
$(B)/lib/shiftadd.pc: client_lib/shiftadd.pc.in
	@mkdir -p $(dir $@)
	$(Q)$(SHIFTADD_PC_SED) $< > $@

PROGRAMS += $(LIBSHIFTADD) $(B)/lib/shiftadd.pc

# Programs linking the shared library find it next to them in the build tree.
CLIENT_RPATH := -Wl,-rpath,'$$ORIGIN/../lib'
$(B)/client_lib/examples/shiftadd-generate.o: | $(PROTO_GEN_H)
$(eval $(call add_program,shiftadd-generate,$(B)/client_lib/examples/shiftadd-generate.o,$(LIBSHIFTADD),$$(CLIENT_RPATH)))

client_TEST_LIBS := $(B)/libclient_lib.a $(B)/libproto.a $(B)/libcommon.a
client_LDLIBS := $(CLIENT_LDLIBS)
ifneq ($(wildcard tests/unit/client/*.c),)
$(eval $(call add_unit_test,client))
$(client_TEST_OBJS): | $(PROTO_GEN_H)
endif
