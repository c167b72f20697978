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

$(B)/lib/shiftadd.pc: client_lib/shiftadd.pc.in
	@mkdir -p $(dir $@)
	$(Q)sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@VERSION@|$(SHIFTADD_VERSION)|' $< > $@

PREFIX ?= /usr/local
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

.PHONY: install
install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/lib/pkgconfig \
		$(DESTDIR)$(PREFIX)/include $(DESTDIR)$(PREFIX)/share/man/man3 \
		$(DESTDIR)$(PREFIX)/share/man/man5 $(DESTDIR)$(PREFIX)/share/man/man8
	install -m 755 $(B)/bin/shiftaddd $(B)/bin/shiftadd-generate $(DESTDIR)$(PREFIX)/bin/
	install -m 755 $(LIBSHIFTADD) $(DESTDIR)$(PREFIX)/lib/
	ln -sf libshiftadd.so.1 $(DESTDIR)$(PREFIX)/lib/libshiftadd.so
	install -m 644 $(B)/lib/shiftadd.pc $(DESTDIR)$(PREFIX)/lib/pkgconfig/
	install -m 644 include/shiftadd.h $(DESTDIR)$(PREFIX)/include/
	install -m 644 man/*.3 $(DESTDIR)$(PREFIX)/share/man/man3/
	install -m 644 man/*.5 $(DESTDIR)$(PREFIX)/share/man/man5/
	install -m 644 man/*.8 $(DESTDIR)$(PREFIX)/share/man/man8/
