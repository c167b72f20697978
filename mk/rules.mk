# One compile rule, one archive rule, one link macro for each kind of program.

$(B)/%.o: %.c
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC      $<")
	$(Q)$(CC) $(ALL_CFLAGS) -MMD -MP -c -o $@ $<

$(B)/%.a:
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  AR      $@")
	$(Q)rm -f $@ && ar rcs $@ $^

# $(call add_lib,NAME): NAME_SRCS -> $(B)/libNAME.a
define add_lib
$(1)_OBJS := $$(patsubst %.c,$(B)/%.o,$$($(1)_SRCS))
$(B)/lib$(1).a: $$($(1)_OBJS)
-include $$($(1)_OBJS:.o=.d)
endef

# $(call add_unit_test,NAME): tests/unit/NAME/test_*.c -> $(B)/tests/unit-NAME, linked with
# NAME_TEST_LIBS (our archives, highest layer first) and NAME_LDLIBS (system libraries);
# NAME_TEST_EXTRA lists helper sources borrowed from other modules' test directories.
# Each test_X.c defines `int test_X_run(void)` (its CMocka group); main() is generated from
# the file list by mk/gen_test_main.sh, so adding a test file never edits a shared file.
define add_unit_test
$(1)_TEST_SRCS := $$(wildcard tests/unit/$(1)/*.c) $$($(1)_TEST_EXTRA)
$(1)_TEST_OBJS := $$(patsubst %.c,$(B)/%.o,$$($(1)_TEST_SRCS)) $(B)/gen/tests/main-$(1).o
UNIT_TESTS += $(B)/tests/unit-$(1)
$(B)/gen/tests/main-$(1).c: mk/gen_test_main.sh $$($(1)_TEST_SRCS)
	@mkdir -p $$(dir $$@)
	$$(Q)mk/gen_test_main.sh $$($(1)_TEST_SRCS) > $$@
$(B)/gen/tests/main-$(1).o: $(B)/gen/tests/main-$(1).c
	$$(Q)$$(CC) $$(ALL_CFLAGS) -c -o $$@ $$<
$(B)/tests/unit-$(1): $$($(1)_TEST_OBJS) $$($(1)_TEST_LIBS)
	@mkdir -p $$(dir $$@)
	@$$(if $$(Q),echo "  LD      $$@")
	$$(Q)$$(CC) $$(ALL_LDFLAGS) -o $$@ $$($(1)_TEST_OBJS) $$($(1)_TEST_LIBS) -lcmocka $$($(1)_LDLIBS)
-include $$(patsubst %.c,$(B)/%.d,$$($(1)_TEST_SRCS))
endef

# $(call add_program,NAME,OBJS,ARCHIVES,LDLIBS): $(B)/bin/NAME
define add_program
PROGRAMS += $(B)/bin/$(1)
$(B)/bin/$(1): $(2) $(3)
	@mkdir -p $$(dir $$@)
	@$$(if $$(Q),echo "  LD      $$@")
	$$(Q)$$(CC) $$(ALL_LDFLAGS) -o $$@ $(2) $(3) $(4)
-include $$(patsubst %.o,%.d,$(2))
endef
