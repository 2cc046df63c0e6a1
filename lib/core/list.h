/* Intrusive lists shared by the library's files. Not installed.
 *
 * The library keeps its objects on lists without allocating list nodes: the link lives inside
 * the object. A doubly linked list with a head pointer (NULL at both ends) gives O(1) removal
 * of any element; singly linked chains (queues, Treiber stacks) only need the reversal below,
 * since a lock-free stack hands its items over newest first. */
#ifndef CFUTURES_LIST_H
#define CFUTURES_LIST_H

#include <stdbool.h>
#include <stddef.h>

/* The object of type `type` whose member `member` is at `ptr`. */
#define CF__CONTAINER_OF(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

typedef struct cf__dlink {
    struct cf__dlink *prev, *next;
} cf__dlink;

/* Whether `l` is on the list at *head (an unlinked link has both pointers NULL). */
static inline bool cf__dlist_linked(cf__dlink *const *head, const cf__dlink *l)
{
    return l->prev || *head == l;
}

/* Links `l` (not on any list) at the front. */
static inline void cf__dlist_push(cf__dlink **head, cf__dlink *l)
{
    l->prev = NULL;
    l->next = *head;
    if (*head)
        (*head)->prev = l;
    *head = l;
}

/* Unlinks `l` if it is on the list (a no-op otherwise). */
static inline void cf__dlist_remove(cf__dlink **head, cf__dlink *l)
{
    if (!cf__dlist_linked(head, l))
        return;
    if (l->prev)
        l->prev->next = l->next;
    else
        *head = l->next;
    if (l->next)
        l->next->prev = l->prev;
    l->prev = l->next = NULL;
}

/* Reverses a NULL-terminated singly linked chain whose nodes hold their link (a pointer to the
 * next node) at byte offset `link_offset`, and returns its new head. */
static inline void *cf__chain_reverse(void *head, size_t link_offset)
{
    void *reversed = NULL;
    while (head) {
        void **link = (void **)((char *)head + link_offset);
        void *next = *link;
        *link = reversed;
        reversed = head;
        head = next;
    }
    return reversed;
}

/* The same, typed: CF__CHAIN_REVERSE(list, cf__hook, next). */
#define CF__CHAIN_REVERSE(head, type, member)                                                      \
    ((type *)cf__chain_reverse((head), offsetof(type, member)))

#endif
